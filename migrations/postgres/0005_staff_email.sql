-- Reviewer leads are data: a lead's token may carry the email address that SLA warnings
-- and breaches go to (besides any distribution list configured for the worker).
ALTER TABLE api_tokens ADD COLUMN email TEXT;
