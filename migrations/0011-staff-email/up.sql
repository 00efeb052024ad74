-- Staff e-mail: optional, for the admins' daily summary and staff notifications by e-mail.
ALTER TABLE users ADD COLUMN email TEXT;
