-- Readers that follow the whole log (rebuild, verify) walk it in (transaction, position)
-- order below the oldest transaction still in flight, so that a transaction committing
-- after a higher position was read is never skipped.
CREATE INDEX events_transaction_order ON events (transaction_id, global_position);
