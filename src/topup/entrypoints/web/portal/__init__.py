"""The subscribers' portal: the website at ``/`` that installs as the app (R2, R5, R7-R9)."""
