-- The scheduler skips the due mail of destinations its limits hold back
-- ("domain NOT IN (...)"). With the domain in the due index that skipping
-- reads the index alone instead of every held recipient's row.
DROP INDEX recipients_due;
CREATE INDEX recipients_due ON recipients(next_attempt, domain) WHERE next_attempt IS NOT NULL;
