"""Code vendored unchanged from other projects, each in its own folder with its licence and a README
saying where it came from; nothing here imports this project."""
