"""lmms-eval adapter (optional extra): generate_until, loglikelihood and registration."""

from __future__ import annotations

import math

import pytest
from PIL import Image

pytest.importorskip(
    "lmms_eval",
    reason="lmms-eval is not installed (optional extra: pip install 'lmms-eval>=0.7'; it pulls torchvision, "
    "which pins its own torch build, so install it in an environment where that is acceptable)",
)

from lmms_eval.api.instance import Instance  # noqa: E402

from v2pe.eval.lmms_eval_adapter import V2PELMMs, lmms_eval_manifest  # noqa: E402

DOC = {"id": 0}


@pytest.fixture
def adapter(tiny_chat):
    model = V2PELMMs(chat=tiny_chat, max_new_tokens=5)
    images = [Image.new("RGB", (112, 56), "red"), Image.new("RGB", (56, 56), "blue")]
    model.task_dict = {"toy": {"test": {0: DOC}}}
    return model, images


def request(kind, arguments):
    return Instance(request_type=kind, arguments=arguments, idx=0, metadata={"task": "toy", "doc_id": 0, "repeats": 1})


def test_generate_until_answers_like_chat(adapter, tiny_chat):
    model, images = adapter
    visuals = lambda doc: images  # noqa: E731
    answers = model.generate_until([
        request("generate_until", ("What colours?", {"max_new_tokens": 4, "until": ["\n\n"]}, visuals, 0, "toy", "test")),
        request("generate_until", ("First <image> then <image>?", {"max_new_tokens": 4}, visuals, 0, "toy", "test")),
    ])
    expected = tiny_chat.generate([[{"from": "human", "value": "<image>\n<image>\nWhat colours?"}]], [images], 4)[0].text
    assert answers[0] == expected.split("\n\n")[0]
    assert isinstance(answers[1], str)


def test_loglikelihood_adds_up_over_a_split_continuation(adapter):
    model, images = adapter
    visuals = lambda doc: images[:1]  # noqa: E731
    (whole, greedy), = model.loglikelihood([request("loglikelihood", ("Colour?", "red", visuals, 0, "toy", "test"))])
    assert whole < 0 and isinstance(greedy, bool)
    first, _ = model.continuation_logprob("<image>\nColour?", "r", images[:1])
    sample = model.chat.processor.encode([{"from": "human", "value": "<image>\nColour?"}], images[:1])
    assert sample["input_ids"].shape[0] > 10
    assert first > whole  # a prefix is more likely than the whole continuation
    assert math.isfinite(whole)


def test_registration_through_the_entry_point_group(tmp_path, monkeypatch):
    from lmms_eval.api.registry import MODEL_REGISTRY
    from lmms_eval.models.registry_v2 import ModelRegistryV2

    assert MODEL_REGISTRY["v2pe"] is V2PELMMs  # legacy registry, by importing the module
    dist = tmp_path / "v2pe_plugin-0.0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: v2pe-plugin\nVersion: 0.0.0\n")
    (dist / "entry_points.txt").write_text("[lmms_eval.models]\nv2pe = v2pe.eval.lmms_eval_adapter:lmms_eval_manifest\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = ModelRegistryV2()
    registry.load_entrypoint_manifests()
    assert registry.get_model_class("v2pe") is V2PELMMs
    assert lmms_eval_manifest().simple_class_path == "v2pe.eval.lmms_eval_adapter.V2PELMMs"


TASK_YAML = """task: v2pe_toy
dataset_path: json
dataset_kwargs:
  data_files: {data}
test_split: train
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
process_results: !function utils.process_results
generation_kwargs:
  max_new_tokens: 4
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 0.0
"""
TASK_UTILS = """from PIL import Image
def doc_to_visual(doc):
    return [Image.open(doc["image"]).convert("RGB")]
def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]
def process_results(doc, results):
    return {"exact_match": float(results[0].strip().lower() == doc["answer"])}
"""


def test_simple_evaluate_runs_a_local_task_end_to_end(tmp_path, monkeypatch):
    """lmms-eval's own evaluator loads the model by name from a checkpoint folder."""
    import json

    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    from v2pe.model.tiny import tiny_model
    from v2pe.processing.tokenizer import byte_tokenizer

    for name, value in {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(name, value)
    checkpoint = tmp_path / "ck"
    tiny_model(seed=6).save_pretrained(checkpoint)
    byte_tokenizer().save_pretrained(checkpoint)
    (checkpoint / "preprocessor_config.json").write_text(json.dumps({"size": {"height": 56, "width": 56}}))
    rows = []
    for colour in ("red", "blue"):
        Image.new("RGB", (112, 56), colour).save(tmp_path / f"{colour}.png")
        rows.append({"image": str(tmp_path / f"{colour}.png"), "question": "What colour?", "answer": colour})
    (tmp_path / "toy.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "v2pe_toy.yaml").write_text(TASK_YAML.format(data=tmp_path / "toy.jsonl"))
    (tasks / "utils.py").write_text(TASK_UTILS)
    result = simple_evaluate(model="v2pe", model_args=f"pretrained={checkpoint},delta=auto,max_tiles=2", tasks=["v2pe_toy"],
                             task_manager=TaskManager(include_path=str(tasks)), device="cpu", batch_size=1)
    assert result["results"]["v2pe_toy"]["exact_match,none"] in (0.0, 0.5, 1.0)
