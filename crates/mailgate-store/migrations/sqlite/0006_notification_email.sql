-- An email address that receives failure notifications, sent through the environment's own
-- pipeline, and the sender to use (the environment's default sender when empty).
ALTER TABLE notification_settings ADD COLUMN email_to TEXT;
ALTER TABLE notification_settings ADD COLUMN email_from TEXT;
