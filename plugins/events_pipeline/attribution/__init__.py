"""Attribution rules: which client owns a site (``domains``), and the sync with the pixel
management service that fills ``client_domains`` (``pixel_management``, ``sync``)."""
