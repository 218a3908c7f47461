"""`v2pe chat` end to end on a tiny native checkpoint with its tokenizer."""

from __future__ import annotations

import pytest
from PIL import Image

from v2pe.cli import main
from v2pe.model.tiny import tiny_model
from v2pe.processing.tokenizer import byte_tokenizer


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-native")
    tiny_model(seed=6).save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    image = folder.parent / "red.png"
    Image.new("RGB", (112, 56), "red").save(image)
    return folder, image


def test_chat_answers_a_question_about_an_image(checkpoint, capsys):
    folder, image = checkpoint
    assert main(["chat", "--model", str(folder), "--image", str(image), "--max-new-tokens", "4", "What is it?"]) == 0
    assert capsys.readouterr().out.endswith("\n")


def test_chat_batch_prints_one_line_per_question(checkpoint, tmp_path, capsys):
    folder, image = checkpoint
    questions = tmp_path / "questions.txt"
    questions.write_text("Colour?\nShape?\n")
    assert main(["chat", "--model", str(folder), "--image", str(image), "--batch", str(questions), "--max-new-tokens", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["Colour?", "Shape?"]


def test_chat_reports_an_unreadable_image_in_one_line(checkpoint, tmp_path, capsys):
    folder, _ = checkpoint
    assert main(["chat", "--model", str(folder), "--image", str(tmp_path / "missing.png"), "hi"]) == 2
    assert "missing.png" in capsys.readouterr().err


def test_chat_reports_a_window_too_small(checkpoint, capsys):
    folder, image = checkpoint
    assert main(["chat", "--model", str(folder), "--image", str(image), "--delta", "auto", "--window", "8", "hi"]) == 2
    assert "beyond the window of 8" in capsys.readouterr().err


def test_chat_warns_when_the_checkpoint_delta_runs_past_the_window(checkpoint, capsys):
    folder, image = checkpoint
    assert main(["chat", "--model", str(folder), "--image", str(image), "--window", "8", "--max-new-tokens", "2", "hi"]) == 0
    err = capsys.readouterr().err
    assert "beyond the trained window of 8 positions" in err
    assert "[delta 1, the checkpoint's]" in err


def test_interactive_chat_keeps_the_conversation_across_turns(checkpoint, monkeypatch, capsys):
    import io

    folder, image = checkpoint
    monkeypatch.setattr("sys.stdin", io.StringIO("What colour?\nAnd the shape?\n\n"))
    assert main(["chat", "--model", str(folder), "--image", str(image), "--interactive", "--max-new-tokens", "3"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("\n") == 2  # two answers, one line each
    assert "error" not in captured.err


@pytest.mark.parametrize("argv, message", [
    (["--delta", "abc", "hi"], "--delta must be 'model', 'auto' or a number in (0, 1], got 'abc'"),
    (["--delta", "2", "hi"], "--delta must lie in (0, 1] (a visual token may not advance further than a text token), got 2.0"),
])
def test_bad_delta_is_one_line_before_loading(checkpoint, capsys, argv, message):
    folder, image = checkpoint
    assert main(["chat", "--model", str(folder), "--image", str(image), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "Loading weights" not in err


def test_max_new_tokens_must_be_positive(checkpoint, capsys):
    folder, image = checkpoint
    with pytest.raises(SystemExit) as exit_info:
        main(["chat", "--model", str(folder), "--max-new-tokens", "0", "hi"])
    assert exit_info.value.code == 2
    assert "--max-new-tokens: must be at least 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [(b"", "no questions"), (b"Colour?\n\xff\xfe?\n", ":2: not UTF-8 text")])
def test_batch_file_problems_are_one_line(checkpoint, tmp_path, capsys, content, message):
    folder, image = checkpoint
    batch = tmp_path / "questions.txt"
    batch.write_bytes(content)
    assert main(["chat", "--model", str(folder), "--image", str(image), "--batch", str(batch)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_chat_from_pretrained_is_the_one_loader(checkpoint, monkeypatch):
    from v2pe.errors import PositionError
    from v2pe.inference import Chat

    folder, image = checkpoint
    chat = Chat.from_pretrained(folder, delta="1/4", window="4096", max_tiles=2, max_new_tokens=3, dtype="float32")
    assert (chat.delta, chat.window, chat.processor.max_tiles, chat.max_new_tokens) == (0.25, 4096, 2, 3)
    assert isinstance(chat.ask("hi", images=[image], history=[]), str)
    again = Chat.from_pretrained(folder, processor=chat.processor, dtype="float32")  # a processor made before (eval loads tasks first)
    assert again.processor is chat.processor and again.delta == "model"
    monkeypatch.setattr("v2pe.model.load_model", lambda *a, **k: pytest.fail("nothing may load for a bad delta"))
    with pytest.raises(PositionError, match="delta must be 'model', 'auto' or a number"):
        Chat.from_pretrained(folder, delta="half")
