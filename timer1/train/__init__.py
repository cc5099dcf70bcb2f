"""timer1.train."""
