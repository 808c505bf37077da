-- The events database and its owner role (psql script; variables events_user,
-- events_password, events_db). Idempotent: an existing role gets its password
-- reset to the configured one, an existing database is left alone.
-- Identifiers go through %I and the password through %L (quoted literals).
SELECT format('CREATE ROLE %I LOGIN', :'events_user')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'events_user') \gexec

SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', :'events_user', :'events_password') \gexec

SELECT format('CREATE DATABASE %I OWNER %I', :'events_db', :'events_user')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'events_db') \gexec

-- The pipeline's role owns its database; nobody else may connect by default.
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'events_db') \gexec
