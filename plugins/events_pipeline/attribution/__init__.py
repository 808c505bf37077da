"""Attribution rules: which client owns a site (``domains``)."""
