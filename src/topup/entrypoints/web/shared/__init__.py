"""What every channel's pages share: rendering, language, CSRF, sessions, forms, base templates."""
