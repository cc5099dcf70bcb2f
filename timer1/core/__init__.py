"""timer1.core."""
