"""Steering a conversation in `wai chat`: /undo, /edit, /retry with /alt, /fork, each checked by what
the next request sends and by what the transcript keeps (every branch, nothing lost)."""

from __future__ import annotations

import json

from tests.commands.chat.test_repl import chat, sent
from tests.support.cli import run_wai
from tests.support.workers_ai_server import Reply, WorkersAIServer
from wai.commands.chat.session import ChatOptions
from wai.store.database import Store

REPLY = "token1 token2 token3 token4 token5 token6 token7 token8"


def answers(*texts: str) -> list[Reply]:
    return [Reply.sse([{"response": text}]) for text in texts]


def every_turn() -> list[tuple[str, str, bool]]:
    with Store.open_default() as store:
        rows: list[tuple[str, str, bool]] = []
        for conversation in sorted(store.recent(10), key=lambda c: c.created_at):
            rows += [
                (t.data.prompt, t.data.reply, t.superseded)
                for t in store.turns(conversation.id, include_superseded=True)
            ]
        return rows


def latest_path() -> list[tuple[str, str]]:
    with Store.open_default() as store:
        cid = store.latest_conversation_id()
        assert cid is not None
        return [(t.data.prompt, t.data.reply) for t in store.active_path(cid)]


def test_undo_takes_the_last_exchange_out_of_the_context_and_keeps_it(server: WorkersAIServer) -> None:
    server.script(*answers("A1", "A2", "A3"))
    ran = chat("one", "two", "/undo", "three")
    assert "took out: two" in ran.out
    assert sent(server)[2] == [("user", "one"), ("assistant", "A1"), ("user", "three")]
    assert every_turn() == [("one", "A1", False), ("two", "A2", True), ("three", "A3", False)]
    # Continued later, the conversation is the path without the exchange taken out.
    chat("four", options=ChatOptions(continue_last=True))
    assert sent(server)[3][-3:] == [("user", "three"), ("assistant", "A3"), ("user", "four")]
    assert ("two", "A2") not in latest_path()


def test_edit_replaces_the_last_message_and_answers_again(server: WorkersAIServer) -> None:
    server.script(*answers("A1", "A2", "A2 edited", "A3"))
    chat("one", "two", "/edit two, said better", "three")
    assert sent(server)[2] == [("user", "one"), ("assistant", "A1"), ("user", "two, said better")]
    assert sent(server)[3][-3:] == [
        ("user", "two, said better"),
        ("assistant", "A2 edited"),
        ("user", "three"),
    ]
    assert ("two", "A2", True) in every_turn()  # the earlier message and its reply are kept
    assert latest_path() == [("one", "A1"), ("two, said better", "A2 edited"), ("three", "A3")]


def test_retry_keeps_the_earlier_reply_and_alt_switches_back_to_it(server: WorkersAIServer) -> None:
    server.script(*answers("first answer", "second answer", "after"))
    ran = chat("question", "/retry", "/alt", "/alt 1", "next")
    listing = [line for line in ran.out.splitlines() if "->" in line]
    assert len(listing) == 2 and listing[1].startswith("*2.") and "first answer" in listing[0]
    assert "now: first answer" in ran.out
    # The reply switched to is what the next request carries.
    assert sent(server)[2] == [("user", "question"), ("assistant", "first answer"), ("user", "next")]
    assert latest_path() == [("question", "first answer"), ("next", "after")]
    assert ("question", "second answer", True) in every_turn()


def test_alt_without_alternatives_and_a_bad_number(server: WorkersAIServer) -> None:
    server.script(*answers("one answer", "two answer"))
    ran = chat("question", "/alt", "/retry", "/alt 7", "/alt x")
    assert "no alternatives" in ran.out
    assert "a number from 1 to 2, not '7'" in ran.err and "not 'x'" in ran.err
    assert len(server.requests) == 2  # nothing more was sent


def test_fork_starts_a_new_conversation_from_here_and_both_are_kept(server: WorkersAIServer) -> None:
    server.script(*answers("A1", "A2", "B3", "A3"))
    chat("one", "two", "/fork", "three in the fork")
    assert sent(server)[2] == [
        ("user", "one"),
        ("assistant", "A1"),
        ("user", "two"),
        ("assistant", "A2"),
        ("user", "three in the fork"),
    ]
    with Store.open_default() as store:
        conversations = store.recent(10)
    assert len(conversations) == 2
    # The fork, continued later, carries the turns before it; the original is untouched.
    assert latest_path() == [("one", "A1"), ("two", "A2"), ("three in the fork", "B3")]
    original = min(conversations, key=lambda c: c.created_at).id
    chat("three in the original", options=ChatOptions(cid=original))
    assert sent(server)[3][-2:] == [("assistant", "A2"), ("user", "three in the original")]
    shown = run_wai("logs", "--cid", max(conversations, key=lambda c: c.created_at).id)
    assert f"forked from {original}" in shown.stdout


def test_logs_show_the_active_path_and_say_where_branches_are(server: WorkersAIServer) -> None:
    server.script(*answers("A1", "A2", "A2 again"))
    chat("one", "two", "/retry")
    with Store.open_default() as store:
        cid = store.latest_conversation_id()
    assert cid is not None
    shown = run_wai("logs", "--cid", cid)
    assert shown.returncode == 0, shown.stderr
    assert "A2 again" in shown.stdout and "\nA2\n" not in shown.stdout
    assert "1 alternative" in shown.stdout
    document = json.loads(run_wai("logs", "--json", "--cid", cid).stdout)
    assert len(document["turns"]) == 3  # every branch
    assert len(document["active_path"]) == 2
    assert all("parent_id" in turn for turn in document["turns"])


def test_undo_after_a_failed_turn_takes_out_the_exchange_before_it_too(server: WorkersAIServer) -> None:
    server.script(*answers("A1", "A2"), Reply.error(400, 5004, "Invalid data"), *answers("A3"))
    chat("one", "two", "broken", "/undo", "three")
    assert sent(server)[3] == [("user", "one"), ("assistant", "A1"), ("user", "three")]
    kept = every_turn()
    assert ("two", "A2", True) in kept and ("broken", "", True) in kept
    assert latest_path() == [("one", "A1"), ("three", "A3")]


def conversations_oldest_first() -> list[str]:
    with Store.open_default() as store:
        return [c.id for c in sorted(store.recent(10), key=lambda c: c.created_at)]


def path_of(cid: str) -> list[tuple[str, str]]:
    with Store.open_default() as store:
        return [(t.data.prompt, t.data.reply) for t in store.active_path(cid)]


def test_undo_in_a_fork_leaves_the_conversation_it_came_from_as_it_was(server: WorkersAIServer) -> None:
    server.script(*answers("A1", "A2", "B3", "A3"))
    chat("one", "two", "/fork", "/undo", "three in the fork")
    assert sent(server)[2] == [("user", "one"), ("assistant", "A1"), ("user", "three in the fork")]
    original, fork = conversations_oldest_first()
    assert path_of(original) == [("one", "A1"), ("two", "A2")]
    assert path_of(fork) == [("one", "A1"), ("three in the fork", "B3")]
    chat("three in the original", options=ChatOptions(cid=original))
    assert sent(server)[3][-2:] == [("assistant", "A2"), ("user", "three in the original")]


def test_alt_in_a_fork_leaves_the_conversation_it_came_from_as_it_was(server: WorkersAIServer) -> None:
    server.script(*answers("first answer", "second answer", "in the fork"))
    chat("question", "/retry", "/fork", "/alt 1", "next")
    assert sent(server)[2] == [("user", "question"), ("assistant", "first answer"), ("user", "next")]
    original, fork = conversations_oldest_first()
    assert path_of(original) == [("question", "second answer")]
    assert path_of(fork) == [("question", "first answer"), ("next", "in the fork")]


def test_retry_on_a_turn_logged_before_branches_keeps_it_as_an_alternative(
    server: WorkersAIServer,
) -> None:
    # A turn of an earlier wai has no parent link: /retry replaced it, and /alt then said the
    # new reply had no alternatives, the earlier one out of reach.
    from pathlib import Path
    from shutil import copyfile

    from wai.store.database import db_path

    db_path().parent.mkdir(parents=True, exist_ok=True)
    copyfile(Path(__file__).parents[2] / "store" / "fixtures" / "logs-schema-3.db", db_path())
    with Store.open_default() as store:
        old = max(store.recent(10), key=lambda c: c.turns).id
        earlier = store.active_path(old)[-1].data.reply
    server.script(*answers("again", "after"))
    ran = chat("/retry", "/alt", "/alt 1", "next", options=ChatOptions(cid=old))
    listing = [line for line in ran.out.splitlines() if "->" in line]
    assert len(listing) == 2 and earlier in listing[0] and listing[1].startswith("*2.")
    assert sent(server)[1][-3:] == [("user", "and of Italy?"), ("assistant", earlier), ("user", "next")]
