-- Domain matching rule (contract §3 (docs/contract.md)), set-based: for each site_id in %(sites)s,
-- the client of its exact domain, else of its nearest listed parent domain.
-- The site is normalised as ingest does (attribution.normalize_site): trimmed,
-- lower-cased, scheme / path / user-info removed, [IPv6] unwrapped, a single
-- ':port' dropped, trailing dot(s) dropped.
-- A site with no match is absent from the result.
WITH s0 AS (
    SELECT x.site_id, lower(btrim(x.site_id, E' \t\n\r\f\x0b')) AS s
    FROM unnest(%(sites)s::text[]) AS x (site_id)
),
s1 AS (  -- no scheme, no path, no user-info
    SELECT site_id,
           regexp_replace(
               split_part(CASE WHEN position('://' IN s) > 0 THEN substr(s, position('://' IN s) + 3) ELSE s END,
                          '/', 1),
               '^.*@', '') AS s
    FROM s0
),
norm AS (  -- [ipv6] literal unwrapped, else a single ':port' dropped; trailing dots dropped
    SELECT site_id,
           rtrim(CASE
                     WHEN left(s, 1) = '[' AND position(']' IN s) > 0 THEN substr(s, 2, position(']' IN s) - 2)
                     WHEN left(s, 1) = '[' THEN substr(s, 2)
                     WHEN length(s) - length(replace(s, ':', '')) = 1 THEN split_part(s, ':', 1)
                     ELSE s
                 END, '.') AS host
    FROM s1
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
