"""Causal-LM transfer pipeline (issue 7): MiniLLM loss properties, sampling, data, a tiny end-to-end
pretrain + SFT + distill step, and the Table IV notebook at smoke scale."""
import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

import elmlib
from elmlib.errors import UserError
from elmlib.extensions import causal_lm as clm
from helpers import tiny_space

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "table4_clm.ipynb"


def _logits(seed, shape=(2, 5, 11)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 2


def test_minillm_loss_is_zero_with_zero_gradient_when_student_equals_teacher():
    teacher = _logits(0)
    student = teacher.clone().requires_grad_(True)
    tokens = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    loss, parts = clm.minillm_loss(student, teacher, tokens, mask)
    loss.backward()
    assert abs(loss.item()) < 1e-6 and abs(parts["reverse_kl"].item()) < 1e-6
    assert student.grad.abs().max() < 1e-6
    # a shifted-but-equal distribution (logits + constant) is the same distribution
    assert float(clm.token_reverse_kl(teacher + 3.0, teacher, mask)) < 1e-6


def test_minillm_loss_positive_kl_and_finite_gradients_otherwise():
    teacher, student = _logits(0), _logits(2).requires_grad_(True)
    tokens = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]])
    loss, parts = clm.minillm_loss(student, teacher, tokens, mask)
    loss.backward()
    assert float(parts["reverse_kl"]) > 0 and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
    assert student.grad[1, 2:].abs().max() == 0  # masked positions get no gradient
    # the single-step term is the exact reverse KL, KL(q || p) != KL(p || q)
    q, p = student.detach().softmax(-1), teacher.softmax(-1)
    kl_qp = (q * (q.log() - p.log())).sum(-1)
    m = mask.float()
    torch.testing.assert_close(parts["reverse_kl"], (kl_qp * m).sum() / m.sum())


def test_long_term_rewards_are_length_normalised_future_means():
    # teacher log-probs of the sampled token differ from the student's by known amounts
    student = torch.zeros(1, 3, 2)
    teacher = torch.zeros(1, 3, 2)
    teacher[0, :, 0] = torch.tensor([0.0, 1.0, 2.0])  # reward grows along the response
    tokens = torch.zeros(1, 3, dtype=torch.long)
    student.requires_grad_(True)
    loss, parts = clm.minillm_loss(student, teacher, tokens, torch.ones(1, 3), long_term_weight=1.0)
    logp = teacher.log_softmax(-1)[0, :, 0]
    r = logp - torch.log(torch.tensor(0.5))
    future = torch.stack([(r[1] + r[2]) / 2, r[2], torch.tensor(0.0)])
    torch.testing.assert_close(parts["long_term"], -(future * torch.log(torch.tensor(0.5))).mean())


def test_sampling_is_seeded_and_stops_at_eos():
    space = tiny_space()
    model = elmlib.ElmForCausalLM(space.config(elmlib.Architecture.uniform(3, "bert", "qv", 16, 4)))
    prompts, mask = clm.left_pad([[5, 6, 7], [8, 9]], pad_id=0)
    runs = [clm.sample_responses(model, prompts, mask, 6, eos_id=3, pad_id=0,
                                 generator=torch.Generator().manual_seed(4)) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    ids, full_mask, resp = runs[0]
    assert ids.shape[1] == 3 + resp.shape[1] and full_mask.shape == ids.shape
    for row, keep in zip(ids[:, 3:], resp):
        eos = (row == 3).nonzero()
        if len(eos):  # the mask keeps EOS and drops what follows
            assert keep[: eos[0] + 1].all() and not keep[eos[0] + 1:].any()


def test_matched_baselines_and_documented_architecture():
    space = clm.clm_space(clm.resolve_clm_config("smoke"), vocab_size=1000)
    found = clm.documented_architecture(space)
    assert {l.block for l in found.layers} == {"bert", "mobilebert"}
    archs = clm.student_architectures(clm.resolve_clm_config("smoke"), space)
    target = space.num_params(found)
    for name in ("all_bert", "all_mobilebert"):
        arch = archs[name][0]
        wide = dataclasses.replace(space, ffn_min=space.ffn_step, ffn_max=16 * space.ffn_max)
        assert abs(wide.num_params(arch) - target) / target < 0.05, name
        assert {l.block for l in arch.layers} == {name.split("_")[1]}


def test_found_architecture_reads_arch_json_and_names_a_missing_one(tmp_path):
    space = clm.clm_space(clm.resolve_clm_config("smoke"), vocab_size=1000)
    with pytest.raises(ValueError, match="arch.json"):
        clm.found_architecture(space, tmp_path)
    arch = elmlib.Architecture.uniform(4, "mobilebert", "kv", 32, 4)
    (tmp_path / "arch.json").write_text(json.dumps({**arch.to_dict(), "params": 1}))
    assert clm.found_architecture(space, tmp_path)[0] == arch


def test_config_errors_name_the_setting():
    with pytest.raises(ValueError, match="corpus='web'"):
        clm.resolve_clm_config("smoke", overrides={"corpus": "web"})
    with pytest.raises(ValueError, match="unknown setting"):
        clm.resolve_clm_config("smoke", overrides={"lr": 1})
    with pytest.raises(ValueError, match="scale='huge'"):
        clm.resolve_clm_config("huge")


def test_offline_instruction_sets_are_disjoint():
    train = clm.instruction_examples("offline", "train")
    held = clm.instruction_examples("offline", "heldout")
    for task in ("xsum", "boolq"):
        t = {(r["input"], r["response"]) for r in train if r["task"] == task}
        h = {(r["input"], r["response"]) for r in held if r["task"] == task}
        assert t and h and not t & h, task
    assert {r["response"] for r in held if r["task"] == "boolq"} == {"Yes.", "No."}


class _Tok:
    """A character-level stand-in for a tokenizer, enough for prompts, SFT batches and decoding."""
    pad_token_id, eos_token_id, bos_token_id, chat_template = 0, 1, 2, None

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [3 + (ord(c) % 90) for c in text]}

    def decode(self, ids):
        return "".join(chr(i - 3 + 32) for i in ids)

    def batch_decode(self, rows, skip_special_tokens=True):
        return [self.decode([int(i) for i in r if i > 2]) for r in rows]

    def __len__(self):
        return 93


def test_tiny_pretrain_sft_distill_and_evaluate(tmp_path):
    """One step of every stage on a tiny student; a second tiny ElmForCausalLM plays the teacher."""
    tok = _Tok()
    cfg = clm.resolve_clm_config("smoke", overrides=dict(pretrain_steps=2, pretrain_batch_size=2, sft_steps=1,
                                                         distill_steps=1, distill_batch_size=2, max_new_tokens=4,
                                                         max_input_tokens=20, eval_batch_size=2, max_length=16))
    space = dataclasses.replace(tiny_space(), vocab_size=len(tok), max_position_embeddings=512, type_vocab_size=1)
    arch = clm.documented_architecture(dataclasses.replace(space, num_layers=3))
    student = clm.build_student(space, arch, tok, seed=0)
    teacher = clm.build_student(space, arch, tok, seed=1).eval().requires_grad_(False)
    rows = torch.randint(3, len(tok), (8, 16), generator=torch.Generator().manual_seed(0))
    examples = [dict(task="t", instruction="Say it.", input=f"text {i}", response=f"answer {i}") for i in range(4)]
    before = {k: v.clone() for k, v in student.state_dict().items()}
    clm.pretrain(student, rows, cfg, tmp_path)
    clm.sft(student, tok, examples, cfg, tmp_path)
    clm.distill(student, teacher, tok, examples, rows, cfg, tmp_path)
    changed = [k for k, v in student.state_dict().items() if not torch.equal(v, before[k])]
    assert changed
    log = [json.loads(l) for l in (tmp_path / "distill.log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and all(map(lambda v: v == v, log[0].values()))  # no NaN
    result = clm.evaluate(student, tok, examples[:2], rows[:2], cfg)
    assert 0 <= result["rouge_l"]["t"] <= 100 and result["perplexity"] > 1


def _fig4_setup():
    """The smoke settings with short prompts and responses, the char tokenizer, and smoke-width students."""
    tok = _Tok()
    cfg = clm.resolve_clm_config("smoke", overrides=dict(max_input_tokens=40, max_new_tokens=5, eval_batch_size=3))
    space = clm.clm_space(cfg, len(tok))
    students = {name: (clm.build_student(space, arch, tok, seed=i), source)
                for i, (name, (arch, source)) in enumerate(clm.student_architectures(cfg, space).items())}
    return tok, cfg, students


def test_fig4_rows_are_each_models_own_greedy_response_to_table4_prompts():
    from elmlib.repro import fig4_chat

    tok, cfg, students = _fig4_setup()
    prompts = fig4_chat.chat_prompts(cfg, per_task=2)
    # the chat prompts are the first two of every task that Table IV scores
    scored = clm.take_per_task(clm.instruction_examples("offline", "heldout"), cfg.eval_instructions, cfg.seed)
    assert prompts == [ex for t in ("boolq", "xsum") for ex in [e for e in scored if e["task"] == t][:2]]
    table = fig4_chat.chat_table(students, tok, prompts, cfg)
    assert list(table.columns) == fig4_chat.COLUMNS and len(table) == 3 * 4
    for row in table.itertuples():
        model, source = students[row.model]
        alone = clm.generate_responses(model, tok, [prompts[row.prompt_id]], cfg)[0]  # unpadded, batch of one
        assert row.response == alone and row.arch_source == source
        assert row.reference == prompts[row.prompt_id]["response"]
        assert row.prompt.startswith(prompts[row.prompt_id]["instruction"]) and row.prompt.endswith(" ...")
    assert len(set(table.response)) > 1  # three differently seeded students do not all say the same thing
    with pytest.raises(ValueError, match="per_task=0"):
        fig4_chat.chat_prompts(cfg, per_task=0)


def test_run_fig4_reloads_the_trained_students_writes_and_renders(tmp_path):
    from elmlib.io.files import write_json, write_result
    from elmlib.repro import fig4_chat, plots
    from elmlib.repro.table4_clm import student_folder

    tok, cfg, students = _fig4_setup()
    space = clm.clm_space(cfg, len(tok))
    teacher = clm.build_student(space, clm.documented_architecture(space), tok, seed=9)
    for search in (True, False):  # neither the causal search nor the students are in the run folder yet
        with pytest.raises(UserError, match="run_table4"):
            fig4_chat.run_fig4(cfg, tmp_path, teacher=(teacher, tok), search=search)
    archs = clm.student_architectures(cfg, space)
    for name, (model, _) in students.items():
        folder = student_folder(tmp_path, name, archs[name][0])
        model.save_pretrained(folder / "model")
        write_json({"digest": cfg.digest()}, folder / "eval.json")
    table = fig4_chat.run_fig4(cfg, tmp_path, teacher=(teacher, tok), per_task=1, search=False)
    assert list(dict.fromkeys(table.model)) == ["teacher", "elm_documented_not_searched", "all_bert", "all_mobilebert"]
    expected = fig4_chat.chat_table({"teacher": (teacher, "smollm2"), **students}, tok,
                                    fig4_chat.chat_prompts(cfg, 1), cfg)
    assert table.response.tolist() == expected.response.tolist()  # the reloaded students answer as the trained ones
    write_result(table, tmp_path / "res" / "fig4_chat_examples.csv", config=cfg.to_dict(), seed=0)
    assert plots.render_all(tmp_path / "res", tmp_path / "fig") == ["fig4_chat_examples"]
    for ext in ("png", "pdf"):
        assert (tmp_path / "fig" / f"fig4_chat_examples.{ext}").stat().st_size > 5000


def test_causal_supernet_paths_are_left_to_right():
    from elmlib.extensions.causal_lm import search

    space = dataclasses.replace(tiny_space(), vocab_size=50, type_vocab_size=1)
    net = search.causal_supernet(space, seed=0)
    x = torch.randint(3, 50, (2, 9), generator=torch.Generator().manual_seed(0))
    y = x.clone()
    y[:, 6:] = 7
    for genome in ([0, 7, 13, 5], [len(space.ffn_choices) * 6 - 1] * 4):
        arch = search.decode(space, genome[:space.num_layers])
        a, b = search.causal_logits(net.eval(), x, arch), search.causal_logits(net, y, arch)
        torch.testing.assert_close(a[:, :6], b[:, :6])   # no position sees a later token
        assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_causal_search_writes_a_searched_architecture_within_budget(tmp_path):
    tok = _Tok()
    cfg = clm.resolve_clm_config("smoke", overrides=dict(search_steps=3, pretrain_batch_size=2, search_population=4,
                                                         search_generations=2, search_eval_rows=3, eval_text_rows=2,
                                                         max_length=16))
    space = clm.clm_space(cfg, len(tok))
    teacher = clm.build_student(space, clm.documented_architecture(space), tok, seed=1).eval().requires_grad_(False)
    rows = torch.randint(3, len(tok), (12, 16), generator=torch.Generator().manual_seed(0))
    folder = clm.causal_search(cfg, teacher, tok, rows, rows[:5], tmp_path / "search")
    arch, source = clm.found_architecture(space, folder)
    assert source.startswith("causal supernet search (smoke") and source.endswith("arch.json")
    assert space.num_params(arch) <= space.num_params(clm.documented_architecture(space))
    history = pd.read_csv(folder / "search.csv")
    assert len(history) == 8 and history.params.le(space.num_params(clm.documented_architecture(space))).all()
    assert elmlib.Architecture.from_json(history.sort_values("held_out_ce").arch.iloc[0]) == arch
    log = [json.loads(l) for l in (folder / "search-supernet.log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all(r["kd"] >= 0 and r["ce"] > 0 for r in log)
    clm.causal_search(cfg, teacher, tok, rows, rows[:5], folder)   # same settings: kept, not searched again
    assert len((folder / "search-supernet.log.jsonl").read_text().splitlines()) == 3
    with pytest.raises(UserError, match="search_eval_rows=3"):
        clm.causal_search(cfg, teacher, tok, rows, rows[:4], tmp_path / "other")


@pytest.mark.notebooks
def test_table4_notebook_runs_at_smoke_scale(tmp_path):
    import papermill as pm

    nb = json.loads(NOTEBOOK.read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and nb["cells"][0]["cell_type"] == "markdown"
    assert all(c.get("outputs", []) == [] for c in nb["cells"] if c["cell_type"] == "code")
    pm.execute_notebook(str(NOTEBOOK), str(tmp_path / "executed.ipynb"), kernel_name="python3",
                        parameters=dict(scale="smoke", seed=0, run_dir=str(tmp_path / "run"),
                                        out_dir=str(tmp_path / "out")), cwd=str(ROOT / "notebooks"))
    table = pd.read_csv(tmp_path / "out" / "results" / "table4_clm.csv")
    assert list(table.columns) == ["model", "params", "metric", "dataset", "value", "paper_value", "arch_source",
                                   "scale", "seed"]
    # no search run folder: the ELM row's architecture comes from the causal search in the run folder, and says so
    assert set(table.model) == {"elm_found", "all_bert", "all_mobilebert", "teacher"}
    elm = table[table.model == "elm_found"]
    assert elm.arch_source.str.startswith("causal supernet search (smoke").all()
    searched = json.loads((tmp_path / "run" / "table4_clm-smoke" / "causal_search" / "arch.json").read_text())
    assert elm.arch_source.str.endswith("causal_search/arch.json").all() and searched["params"] <= searched["budget"]
    rouge = table[table.metric == "rouge_l"]
    assert set(rouge.dataset) == {"xsum", "boolq"} and rouge.value.between(0, 100).all()
    ppl = table[table.metric == "perplexity"]
    assert (ppl.value > 1).all() and (table.scale == "smoke").all()
    assert (tmp_path / "out" / "results" / "table4_clm.provenance.json").exists()
    for ext in ("png", "pdf"):
        fig = tmp_path / "out" / "figures" / f"table4_clm.{ext}"
        assert fig.exists() and fig.stat().st_size > 5000
    # Fig. 4's counterpart: every Table IV model answers the same two prompts per task
    chats = pd.read_csv(tmp_path / "out" / "results" / "fig4_chat_examples.csv", keep_default_na=False)
    assert set(chats.model) == set(table.model) and set(chats.task) == {"xsum", "boolq"}
    assert chats.groupby("model").prompt_id.nunique().eq(4).all()
    assert chats.groupby("prompt_id").prompt.nunique().eq(1).all()  # one prompt per id, whichever model
    teacher_says = chats[chats.model == "teacher"].response
    assert teacher_says.str.len().gt(0).all()
    for ext in ("png", "pdf"):
        assert (tmp_path / "out" / "figures" / f"fig4_chat_examples.{ext}").stat().st_size > 5000
