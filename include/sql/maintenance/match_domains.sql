-- Domain matching rule (SPEC §3), set-based: for each site_id in %(sites)s,
-- the client of its exact domain, else of its nearest listed parent domain.
-- The site is lower-cased, trimmed, its port and trailing dot(s) dropped.
-- A site with no match is absent from the result.
WITH norm AS (
    SELECT s.site_id,
           rtrim(regexp_replace(lower(btrim(s.site_id)), ':[0-9]*$', ''), '.') AS host
    FROM unnest(%(sites)s::text[]) AS s (site_id)
),
suffixes AS (
    SELECT n.site_id,
           g.depth,
           array_to_string((string_to_array(n.host, '.'))[g.depth:], '.') AS domain
    FROM norm AS n
    CROSS JOIN LATERAL generate_series(1, cardinality(string_to_array(n.host, '.'))) AS g (depth)
    WHERE n.host <> ''
)
SELECT DISTINCT ON (x.site_id) x.site_id, d.client_id, c.privacy_level
FROM suffixes AS x
JOIN client_domains AS d ON d.domain = x.domain
JOIN clients AS c ON c.client_id = d.client_id
ORDER BY x.site_id, x.depth
