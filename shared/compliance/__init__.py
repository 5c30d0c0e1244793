"""compliance: sanctions lists, KYC/sanctions/AML screening, decisions and reviews."""

# The database schema this domain owns (its role writes only here).
SCHEMA = "compliance"
# The rescreen key's expression, and how many keys there are (shards split 0..RESCREEN_KEYS-1).
RESCREEN_KEY_SQL = "('x' || substr(md5(user_id), 1, 4))::bit(16)::integer"
RESCREEN_KEYS = 65536
