"""timer1.util."""
