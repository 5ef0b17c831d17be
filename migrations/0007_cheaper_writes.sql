-- Leave room on every page of the read model for new row versions, so that an update that
-- changes no indexed column (names, flags, the version) is a HOT update without index
-- writes. Applies to pages written from now on; a rebuild writes the whole table so.
ALTER TABLE users SET (fillfactor = 80);

-- Every reader of the whole log walks it by (transaction_id, global_position) (migration
-- 0004); nothing looks events up by global_position alone, and an identity column is
-- unique by construction. One index fewer to write per event.
DROP INDEX events_global_position;
