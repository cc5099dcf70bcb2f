"""timer1.util.progress: one updating line on a terminal, a line every few percent elsewhere, nothing for
short work (issue 41, build 2)."""

import io

from timer1.util.progress import ProgressLine, format_seconds


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_line_every_few_percent_and_the_end():
    log = io.StringIO()
    line = ProgressLine("forecasting", 200, stream=log, every=0.25, after=0.0)
    for done in range(1, 201):
        line.update(done)
    line.close()
    lines = log.getvalue().splitlines()
    assert [entry.split(":")[1].split(",")[0].strip() for entry in lines] == \
        ["1/200 series", "51/200 series", "101/200 series", "151/200 series", "200/200 series"]
    assert "left" in lines[1] and "left" not in lines[-1]


def test_a_terminal_gets_one_line_redrawn_in_place():
    screen = Terminal()
    line = ProgressLine("[ETTh1] timer1", 3, "windows", stream=screen, after=0.0)
    for done in (1, 2, 3):
        line.update(done)
    line.close()
    text = screen.getvalue()
    assert text.count("\r") == 3 and text.count("\n") == 1 and text.endswith("3/3 windows, " + text.split(", ")[-1])


def test_short_work_says_nothing():
    log = Terminal()
    line = ProgressLine("quick", 10, stream=log)          # shown only after 3 s
    for done in range(1, 11):
        line.update(done)
    line.close()
    assert log.getvalue() == ""


def test_format_seconds():
    assert format_seconds(1234.4) == "20m34s" and format_seconds(7322) == "2h02m" and format_seconds(float("nan")) == "?"
