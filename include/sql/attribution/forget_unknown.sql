-- %(site)s is mapped now: no negative cache entry any more.
DELETE FROM attribution_negative_cache WHERE site = %(site)s
