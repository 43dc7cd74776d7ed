"""One ComponentResource per concern: registry, Heroku environment, CI/CD variables, runner."""
