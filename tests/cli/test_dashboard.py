"""``handoffs dashboard`` refuses what Streamlit would fail on, before it starts."""

from __future__ import annotations

import socket

import pytest

from handoffs.cli import main


def test_a_port_in_use_is_one_line_and_exit_2(store, chdb_dir, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exit_:
            main(["dashboard", "--port", str(port), "--store", f"chdb://{chdb_dir}?database={store.url.database}"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().endswith(f"cannot listen on 127.0.0.1:{port}: Address already in use; "
                                                    "pick another --port")


def test_a_path_that_holds_no_store_is_one_line_and_exit_2(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    # It started Streamlit, which served an error page from a process that looked healthy.
    typo = tmp_path / "stroe"
    with pytest.raises(SystemExit) as exit_:
        main(["dashboard", "--store", f"chdb://{typo}"])
    assert exit_.value.code == 2 and not typo.exists()
    assert capsys.readouterr().err.strip() == (f"handoffs: error: no embedded store at {typo}: check --store, or make "
                                               "one with `handoffs collect`, `handoffs demo` or `handoffs import`")
