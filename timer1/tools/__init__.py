"""timer1.tools."""
