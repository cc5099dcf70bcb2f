"""timer1.forecast."""
