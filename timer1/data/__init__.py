"""timer1.data."""
