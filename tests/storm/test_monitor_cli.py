"""msstorm-monitor end to end: its ``amain`` in the test's loop against the in-process
server of conftest, with clients that answer pokes over real sockets."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from stormkit import TOKEN, StormServer

from msstorm.monitor import amain
from msstorm.monitor.results import summarize
from msstorm.monitor.scenario import ScenarioError, Step, load, parse_inline, parse_json

PNG = b"\x89PNG\r\n\x1a\n"


class Ran:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code = code
        self.out = out
        self.err = err

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines()]

    def document(self) -> dict[str, Any]:
        (document,) = self.json_lines()
        return document


async def monitor(
    capsys: pytest.CaptureFixture[str], server: StormServer | str, *argv: str, token: str = TOKEN
) -> Ran:
    url = server if isinstance(server, str) else server.url
    code = await amain(["--url", url, "--token", token, "--connect-timeout", "5", *argv])
    captured = capsys.readouterr()
    return Ran(code, captured.out, captured.err)


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# -- the operations ---------------------------------------------------------------


async def test_unicast_to_a_given_client_as_json(
    storm_server: StormServer, capsys: pytest.CaptureFixture[str]
) -> None:
    clients = await storm_server.pokees_(20)
    target = clients[5]
    ran = await monitor(capsys, storm_server, "--json", "unicast", "--dest", str(target.sid))
    assert ran.code == 0, ran.err
    status = ran.document()
    assert (status["type"], status["done"], status["timedOut"]) == ("unicast", True, False)
    assert status["clientId"] == target.sid and status["op"]
    summary = status["summary"]
    assert (summary["expected"], summary["received"], summary["lost"]) == (1, 1, 0)
    assert summary["rtt"]["min"] > 0 and "unicast" not in status
    assert len(target.pokes) == 1 and sum(len(c.pokes) for c in clients) == 1
    assert status["op"] in ran.err  # the line per finished operation


async def test_unicast_repeated_prints_a_table_with_totals(
    storm_server: StormServer, capsys: pytest.CaptureFixture[str]
) -> None:
    clients = await storm_server.pokees_(20)
    ran = await monitor(capsys, storm_server, "unicast", "--repeat", "4")
    assert ran.code == 0, ran.err
    assert sum(len(c.pokes) for c in clients) == 4
    lines = ran.out.splitlines()
    head = lines[0].split()
    for title in ("type", "op", "expected", "received", "lost", "min", "p50", "p99.9", "mean"):
        assert title in head
    rows = [line.split() for line in lines[2:]]
    unicasts = [row for row in rows if row[0] == "unicast"]
    assert len(unicasts) == 4 and all(row[2:6] == ["ok", "1", "1", "0"] for row in unicasts)
    assert sum(1 for row in rows if row[0] == "pingDelay") == 5  # a row per operation, totals
    (total,) = [row for row in rows if row[0] == "total"]
    assert total[1:7] == ["4", "ops", "ok", "4", "4", "0"]
    lines = ran.err.splitlines()
    assert len(lines) == 4
    assert all(line.startswith(f"[{n}/4] unicast ") for n, line in enumerate(lines, 1))


async def test_broadcast_json_with_details_one_object_per_operation(
    storm_server: StormServer, capsys: pytest.CaptureFixture[str]
) -> None:
    await storm_server.pokees_(40)
    ran = await monitor(capsys, storm_server, "--json", "broadcast", "--repeat", "2", "--details")
    assert ran.code == 0, ran.err
    first, second = ran.json_lines()
    assert first["op"] != second["op"]
    for status in (first, second):
        assert status["type"] == "broadcast" and status["done"] is True
        assert status["summary"]["received"] == 40 and status["summary"]["lost"] == 0
        assert len(status["broadcast"]) == 40 and all(pair[1] > 0 for pair in status["broadcast"])
        rtt = status["summary"]["rtt"]
        assert rtt["min"] <= rtt["p50"] <= rtt["p99"] <= rtt["p999"] <= rtt["max"]


async def test_broadcast_plot(
    storm_server: StormServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    await storm_server.pokees_(30)
    png = tmp_path / "broadcast.png"
    ran = await monitor(capsys, storm_server, "broadcast", "--plot", str(png))
    assert ran.code == 0, ran.err
    assert_png(png)
    assert f"plot written to {png}" in ran.err
    assert ran.out.splitlines()[2].split()[0] == "broadcast"


async def test_tree_report_json_and_plot_by_depth(
    storm_server: StormServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    clients = await storm_server.pokees_(40)
    png = tmp_path / "tree.png"
    ran = await monitor(
        capsys, storm_server, "--json", "tree", "--leaves", "16", "--plot", str(png)
    )
    assert ran.code == 0, ran.err
    status = ran.document()
    assert status["type"] == "tree" and status["treeLeaves"] == 16
    assert (status["summary"]["expected"], status["summary"]["received"]) == (31, 31)
    assert sum(len(c.pokes) for c in clients) == 31
    assert_png(png)

    ran = await monitor(capsys, storm_server, "tree", "--leaves", "8")
    assert ran.code == 0, ran.err
    assert ran.out.splitlines()[2].split()[0] == "tree:8"
    by_depth = ran.out.split("tree:8 by depth")[1].splitlines()[3:]
    assert [row.split()[:2] for row in by_depth] == [["0", "1"], ["1", "2"], ["2", "4"], ["3", "8"]]


# -- run --------------------------------------------------------------------------


async def test_run_inline_scenario_as_one_json_document(
    storm_server: StormServer, capsys: pytest.CaptureFixture[str]
) -> None:
    await storm_server.pokees_(30)
    ran = await monitor(capsys, storm_server, "--json", "run", "unicast*3, broadcast*2, tree:8*2")
    assert ran.code == 0, ran.err
    document = ran.document()
    assert document["ok"] is True
    assert document["scenario"] == [
        {"type": "unicast", "repeat": 3},
        {"type": "broadcast", "repeat": 2},
        {"type": "tree", "treeLeaves": 8, "repeat": 2},
    ]
    operations = document["operations"]
    assert [op["type"] for op in operations] == ["unicast"] * 3 + ["broadcast"] * 2 + ["tree"] * 2
    assert len({op["op"] for op in operations}) == 7
    totals = document["totals"]
    assert totals["operations"] == 7
    assert totals["expected"] == totals["received"] == 3 + 2 * 30 + 2 * 15
    assert totals["lost"] == 0 and totals["timedOut"] == 0
    assert totals["rtt"]["min"] <= totals["rtt"]["p50"] <= totals["rtt"]["max"]
    assert len(ran.err.splitlines()) == 7  # a line per finished operation, no bar


async def test_run_scenario_file_with_plot(
    storm_server: StormServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    clients = await storm_server.pokees_(25)
    scenario = tmp_path / "scenario.json"
    scenario.write_text(
        json.dumps(
            [
                {"type": "unicast", "destId": clients[3].sid, "repeat": 2},
                {"type": "broadcast"},
                {"type": "tree", "treeLeaves": 4, "repeat": 2},
            ]
        )
    )
    png = tmp_path / "run.png"
    ran = await monitor(capsys, storm_server, "run", str(scenario), "--plot", str(png))
    assert ran.code == 0, ran.err
    assert len(clients[3].pokes) >= 2
    rows = [line.split() for line in ran.out.splitlines()[2:]]
    kinds = [row[0] for row in rows if row and row[0] not in ("pingDelay",)]
    assert kinds[:6] == [f"unicast:{clients[3].sid}"] * 2 + ["broadcast"] + ["tree:4"] * 2 + [
        "total"
    ]
    (total,) = [row for row in rows if row and row[0] == "total"]
    assert total[1:7] == ["5", "ops", "ok", str(2 + 25 + 2 * 7), str(2 + 25 + 2 * 7), "0"]
    assert_png(png)


async def test_run_from_standard_input(
    storm_server: StormServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    await storm_server.pokees_(10)
    monkeypatch.setattr(sys, "stdin", io.StringIO('[{"type": "broadcast", "repeat": 2}]'))
    ran = await monitor(capsys, storm_server, "--json", "run", "-")
    assert ran.code == 0, ran.err
    assert [op["summary"]["received"] for op in ran.document()["operations"]] == [10, 10]


# -- failures ---------------------------------------------------------------------


async def test_lost_answers_exit_1_with_the_report_and_a_progress_bar(
    storm_server: StormServer, capsys: pytest.CaptureFixture[str]
) -> None:
    clients = await storm_server.pokees_(20)
    clients[4].answering = False  # the server's op timeout (1.5 s here) ends the broadcast
    ran = await monitor(
        capsys, storm_server, "--progress", "always", "--refresh", "0.1", "broadcast"
    )
    assert ran.code == 1
    row = ran.out.splitlines()[2].split()
    assert row[0] == "broadcast" and row[2:7] == ["timed", "out", "20", "19", "1"]
    assert "\r" in ran.err and " 19/20 " in ran.err  # the bar, redrawn in place
    assert "TIMED OUT" in ran.err.rsplit("\r", 1)[-1]


async def test_lost_answers_in_json(
    storm_server: StormServer, capsys: pytest.CaptureFixture[str]
) -> None:
    clients = await storm_server.pokees_(10)
    clients[0].answering = False
    scenario = f"broadcast, unicast:{clients[1].sid}*2"
    ran = await monitor(capsys, storm_server, "--json", "run", scenario, "--pause", "0.05")
    assert ran.code == 1
    document = ran.document()
    broadcast, *unicasts = document["operations"]
    assert broadcast["timedOut"] is True and broadcast["summary"]["lost"] == 1
    assert [u["clientId"] for u in unicasts] == [clients[1].sid] * 2
    assert all(u["timedOut"] is False and u["summary"]["lost"] == 0 for u in unicasts)
    assert document["ok"] is False
    assert (document["totals"]["lost"], document["totals"]["timedOut"]) == (1, 1)
    # Asked for afterwards, the operation that lost answers still says so.
    ran = await monitor(capsys, storm_server, "status", "--op", broadcast["op"])
    assert ran.code == 1 and ran.out.splitlines()[2].split()[2:4] == ["timed", "out"]


async def test_monitor_gives_up_after_its_timeout(
    storm_server: StormServer, capsys: pytest.CaptureFixture[str]
) -> None:
    (silent,) = await storm_server.pokees_(1)
    silent.answering = False
    ran = await monitor(capsys, storm_server, "--json", "--timeout", "0.3", "unicast")
    assert ran.code == 1
    status = ran.document()
    assert status["done"] is False and status["timedOut"] is True and status["gaveUp"] is True
    assert status["summary"]["received"] == 0
    assert "GAVE UP" in ran.err


async def test_wrong_token_exits_2(
    storm_server: StormServer, capsys: pytest.CaptureFixture[str]
) -> None:
    await storm_server.pokees_(2)
    ran = await monitor(capsys, storm_server, "broadcast", token="wrong")
    assert ran.code == 2 and ran.out == ""
    assert "monitor token refused by the server" in ran.err
    ran = await monitor(capsys, storm_server, "--json", "status", token="wrong")
    assert ran.code == 2 and ran.document()["error"]["code"] == "token-refused"
    assert storm_server.storm.counts["monitor refused"] == 2
    assert all(not c.pokes for c in storm_server.pokees)


async def test_no_server_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    ran = await monitor(capsys, url, "broadcast")
    assert ran.code == 2 and ran.out == ""
    assert f"cannot reach {url}" in ran.err
    ran = await monitor(capsys, url, "--json", "status")
    assert ran.code == 2 and ran.document()["error"]["code"] == "unreachable"
    ran = await monitor(capsys, url.removeprefix("http://"), "status")  # HOST:PORT is http
    assert ran.code == 2 and f"cannot reach {url}" in ran.err


async def test_no_token_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MSSTORM_MONITOR_TOKEN", raising=False)
    assert await amain(["broadcast"]) == 2
    assert "no monitor token" in capsys.readouterr().err
    monkeypatch.setenv("MSSTORM_MONITOR_TOKEN", "from-the-environment")
    assert await amain(["--url", f"http://127.0.0.1:{closed_port()}", "broadcast"]) == 2
    assert "cannot reach" in capsys.readouterr().err  # the token was found


async def test_token_from_the_environment(
    storm_server: StormServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await storm_server.pokees_(3)
    monkeypatch.setenv("MSSTORM_MONITOR_TOKEN", TOKEN)
    assert await amain(["broadcast", "--url", storm_server.url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["received"] == 3


async def test_refused_operations_exit_2(
    storm_server: StormServer, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = await monitor(capsys, storm_server, "broadcast")
    assert ran.code == 2 and "no client is connected" in ran.err
    await storm_server.pokees_(3)
    ran = await monitor(capsys, storm_server, "--json", "tree", "--leaves", "2048")
    assert ran.code == 2
    assert ran.document()["error"]["code"] == "tree-too-large"
    ran = await monitor(capsys, storm_server, "unicast", "--dest", "no-such-sid")
    assert ran.code == 2 and "no client 'no-such-sid'" in ran.err
    # In a run, the operations before the refusal are reported.
    ran = await monitor(capsys, storm_server, "--json", "run", "broadcast, tree:4096, broadcast")
    assert ran.code == 2
    document = ran.document()
    assert len(document["operations"]) == 1 and document["error"]["code"] == "tree-too-large"


async def test_connection_lost_mid_operation_exits_2(
    storm_server: StormServer, capsys: pytest.CaptureFixture[str]
) -> None:
    (silent,) = await storm_server.pokees_(1)
    silent.answering = False
    task = asyncio.ensure_future(monitor(capsys, storm_server, "unicast"))
    while not storm_server.storm.running:
        await asyncio.sleep(0.01)
    (sid,) = storm_server.storm.server.sids("/monitor")
    storm_server.storm.server.close(sid, "/monitor")
    ran = await asyncio.wait_for(task, 5)
    assert ran.code == 2 and "lost the connection" in ran.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "tree*2"], "a tree needs its number of leaves"),
        (["run", "multicast"], "unknown operation 'multicast'"),
        (["run", "tree:12"], "power of two"),
        (["run", "broadcast:3"], "takes no argument"),
        (["run", "missing.json"], "no such scenario file"),
        (["tree", "--leaves", "3"], "must be a power of two"),
        (["broadcast", "--repeat", "0"], "must be 1 or more"),
        (["status", "--plot", "x.png"], "status --plot needs --op"),
        (["broadcast", "--plot", "x.svg"], "PNG"),
        (["frobnicate"], "invalid choice"),
        (["--url", "ftp://somewhere", "status"], "expected http://HOST:PORT"),
        (["status", "--url", "http://host:99999"], "not a URL"),
    ],
)
async def test_usage_errors_exit_2_before_connecting(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    ran = await monitor(capsys, f"http://127.0.0.1:{closed_port()}", *argv)
    assert ran.code == 2 and message in ran.err and "cannot reach" not in ran.err


async def test_plot_without_matplotlib_says_how_to_get_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    ran = await monitor(capsys, f"http://127.0.0.1:{closed_port()}", "broadcast", "--plot", "b.png")
    assert ran.code == 2 and "needs matplotlib" in ran.err and "msstorm[plot]" in ran.err


# -- status -----------------------------------------------------------------------


async def test_status_overview_and_one_operation(
    storm_server: StormServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    clients = await storm_server.pokees_(30)
    op = (await monitor(capsys, storm_server, "--json", "broadcast")).document()["op"]

    ran = await monitor(capsys, storm_server, "--json", "status")
    assert ran.code == 0
    overview = ran.document()
    assert overview["clients"] == 30 and op in overview["finished"]
    assert overview["counts"]["broadcast completed"] == 1
    ran = await monitor(capsys, storm_server, "status")
    assert "30 clients connected" in ran.out and op in ran.out and "no operation running" in ran.out

    ran = await monitor(capsys, storm_server, "status", "--op", op, "--summary", "--json")
    status = ran.document()
    assert status["op"] == op and "broadcast" not in status
    assert status["summary"]["received"] == 30
    ran = await monitor(capsys, storm_server, "status", "--op", op, "--json")
    assert len(ran.document()["broadcast"]) == 30

    png = tmp_path / "op.png"
    ran = await monitor(capsys, storm_server, "status", "--op", op, "--plot", str(png))
    assert ran.code == 0 and ran.out.splitlines()[2].split()[:6] == [
        "broadcast",
        op,
        "ok",
        "30",
        "30",
        "0",
    ]
    assert_png(png)

    ran = await monitor(capsys, storm_server, "status", "--op", "nope")
    assert ran.code == 2 and "no operation 'nope'" in ran.err

    # A running operation shows up in the overview.
    clients[0].answering = False
    await monitor(capsys, storm_server, "--timeout", "0.2", "broadcast")
    ran = await monitor(capsys, storm_server, "--json", "status", "--summary")
    (running,) = ran.document()["operations"]
    assert running["done"] is False and running["summary"]["received"] == 29
    ran = await monitor(capsys, storm_server, "status")
    assert "running operations (1)" in ran.out


# -- help, the console script, scenarios ------------------------------------------


async def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    assert await amain(["--help"]) == 0
    text = capsys.readouterr().out
    for needed in ("examples:", "exit status", "http://127.0.0.1:3000", "MSSTORM_MONITOR_TOKEN"):
        assert needed in text
    for command in ("unicast", "broadcast", "tree", "run", "status"):
        assert await amain([command, "--help"]) == 0
        assert "examples:" in capsys.readouterr().out


async def test_console_script_end_to_end(storm_server: StormServer) -> None:
    await storm_server.pokees_(12)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "msstorm.monitor",
        "--url",
        storm_server.url,
        "--json",
        "run",
        "broadcast, tree:4",
        env={**os.environ, "MSSTORM_MONITOR_TOKEN": TOKEN},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    document = json.loads(out)
    assert document["ok"] is True and document["totals"]["received"] == 12 + 7


def test_inline_scenarios() -> None:
    assert parse_inline("unicast*10, broadcast*3, tree:1024*2") == [
        Step("unicast", repeat=10),
        Step("broadcast", repeat=3),
        Step("tree", tree_leaves=1024, repeat=2),
    ]
    assert parse_inline("unicast:abc-_12 Tree:1") == [
        Step("unicast", dest_id="abc-_12"),
        Step("tree", tree_leaves=1),
    ]
    for bad in ("", "tree:x", "unicast*0", "broadcast**2", "tree:-4"):
        with pytest.raises(ScenarioError):
            parse_inline(bad)


def test_json_scenarios(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('[{"type": "tree", "treeLeaves": 64, "repeat": 3}, {"type": "unicast"}]')
    assert load(str(path)) == [Step("tree", tree_leaves=64, repeat=3), Step("unicast")]
    for bad, message in [
        ({"type": "broadcast"}, "non-empty JSON list"),
        ([], "non-empty JSON list"),
        (["broadcast"], "expected an object"),
        ([{"type": "tree", "leaves": 4}], "unknown key(s) leaves"),
        ([{"type": "tree", "treeLeaves": 4.0}], "power of two"),
        ([{"type": "broadcast", "repeat": "2"}], "repeat"),
        ([{"type": "broadcast", "destId": "x"}], "only a unicast"),
        ([{"type": "unicast", "treeLeaves": 2}], "only a tree"),
    ]:
        with pytest.raises(ScenarioError, match=r"entry|list") as info:
            parse_json(bad)
        assert message in str(info.value)
    path.write_text("[{")
    with pytest.raises(ScenarioError, match="not valid JSON"):
        load(str(path))


def test_exact_percentiles() -> None:
    values = [float(v) for v in range(1, 1001)]
    stats = summarize(reversed(values))
    assert stats == {
        "min": 1.0,
        "p50": 500.0,
        "p90": 900.0,
        "p99": 990.0,
        "p999": 999.0,
        "max": 1000.0,
        "mean": 500.5,
    }
    assert summarize([]) == dict.fromkeys(stats)
    assert summarize([float(v) for v in range(1, 11)])["p90"] == 9.0
