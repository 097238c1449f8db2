-- Every request rewrites the balances of the accounts it touches, and the operator's accounts are
-- touched by nearly every request. With room left on each page, such an update stays on its page
-- without new index entries (a HOT update) and the old version is pruned on the next visit; with
-- full pages every update leaves a dead row and index entries behind until autovacuum comes by.
ALTER TABLE ledger.accounts SET (fillfactor = 50);
