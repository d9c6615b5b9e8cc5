"""While Ray's output goes to its log file (descriptors 1 and 2 pointed there), the lines meant
for the user still reach the real stdout and stderr, and Ray's own writes do not."""

from __future__ import annotations

import os

from sweeper.views import terminal


def test_inside_to_log_the_users_lines_reach_the_real_streams_and_rays_go_to_the_file(tmp_path, capfd):
    log = tmp_path / "ray-driver.log"
    with terminal.to_log(log):
        os.write(1, b"ray on fd 1\n")
        os.write(2, b"ray on fd 2\n")
        terminal.say("a progress line")
        terminal.say("interrupted: a line for the user", err=True)
    out, err = capfd.readouterr()
    assert "a progress line" in out and "ray on fd 1" not in out
    assert err.strip() == "interrupted: a line for the user"
    text = log.read_text()
    assert "ray on fd 1" in text and "ray on fd 2" in text
    assert "a line for the user" not in text and "a progress line" not in text
