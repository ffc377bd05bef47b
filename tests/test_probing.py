"""Probing classifiers with control tasks (the paper's Table 1): data, alignment, capture, probes."""

import numpy as np
import pytest

import ecco_core as ec
from ecco_core import probing

DEV = probing.UD_ENGLISH_EWT_DEV

# A multiword token (1-2), an empty node (3.1) and a sentence without multiword tokens.
CONLLU = (
    "# text = I don't know.\n"
    "1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n"
    "1\tdo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_\n"
    "2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_\n"
    "3\tknow\tknow\tVERB\tVB\t_\t0\troot\t_\tSpaceAfter=No\n"
    "3.1\tknow\tknow\tVERB\tVB\t_\t_\t_\t3:conj\t_\n"
    "4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_\n"
    "\n"
    "# text = Cats sleep\n"
    "1\tCats\tcat\tNOUN\tNNS\t_\t2\tnsubj\t_\t_\n"
    "2\tsleep\tsleep\tVERB\tVBP\t_\t0\troot\t_\t_\n"
    "\n"
)


# ------------------------------------------------------------------ CoNLL-U
def test_conllu_skips_multiword_ranges_and_empty_nodes():
    sentences = ec.read_conllu(CONLLU)
    assert sentences == [
        ec.Sentence(("do", "n't", "know", "."), ("AUX", "PART", "VERB", "PUNCT")),
        ec.Sentence(("Cats", "sleep"), ("NOUN", "VERB")),
    ]
    assert ec.read_conllu(CONLLU.encode()) == sentences  # an upload's bytes
    assert ec.read_conllu(b"\xef\xbb\xbf" + CONLLU.encode()) == sentences  # with a byte-order mark


def test_conllu_file_of_the_bundled_corpus():
    sentences = ec.read_conllu(DEV)
    assert len(sentences) > 2000
    assert sentences[0].words == ("From", "the", "AP", "comes", "this", "story", ":")
    assert {tag for s in sentences for tag in s.tags} <= set(probing.UPOS_TAGS)


@pytest.mark.parametrize(
    "source, message",
    [
        (CONLLU.replace("2\tsleep\tsleep\tVERB\tVBP\t_\t0\troot\t_\t_", "2\tsleep\tsleep\tVERB"),
         r"line 11 has 4 tab-separated fields, expected 10"),
        (CONLLU.replace("1\tCats", "one\tCats"), r"line 10 has the invalid ID 'one'"),
        (CONLLU.replace("NOUN", "NOUNISH"), r"line 10 has the UPOS tag 'NOUNISH'"),
        ("I don't know.\nnot a treebank\n", r"line 1 has 1 tab-separated fields"),
        (CONLLU.encode("utf-16"), r"not UTF-8"),
        ("# only a comment\n\n", r"no sentence"),
        ("/no/such/file.conllu", r"source must be a CoNLL-U file that exists .*; got '/no/such/file.conllu'"),
    ],
)
def test_malformed_conllu_is_named(source, message):
    with pytest.raises(ValueError, match=message):
        ec.read_conllu(source)


def test_conllu_source_type_is_checked():
    with pytest.raises(TypeError, match="source must be a path"):
        ec.read_conllu(42)


# ---------------------------------------------------------------- alignment
def test_a_word_split_into_several_tokens_is_counted_once(lm, encoder):
    sentence = ec.Sentence(("Steffen", "W.", "Graae", "nominated", "Jennifer"), ("PROPN",) * 3 + ("VERB", "PROPN"))
    for model in (lm, encoder):
        aligned = probing.align(model.tokenizer, sentence)
        tokenizer = model.tokenizer
        n_word_tokens = sum(1 for i in aligned.input_ids if i not in tokenizer.all_special_ids)
        assert n_word_tokens > len(sentence.words)  # some words are split
        assert aligned.words == sentence.words and aligned.tags == sentence.tags
        assert list(aligned.positions) == sorted(set(aligned.positions))
        # The model reads the running text, and each label sits on its word's first sub-token.
        assert list(aligned.input_ids) == tokenizer(" ".join(sentence.words))["input_ids"]
        for position, word in zip(aligned.positions, sentence.words):
            first = tokenizer.decode([aligned.input_ids[position]]).strip().lower()
            assert first and word.lower().startswith(first), (model.name, word, first)


def test_byte_bpe_words_keep_their_leading_space(lm):
    aligned = probing.align(lm.tokenizer, ec.Sentence(("The", "cat", "Jennifer"), ("DET", "NOUN", "PROPN")))
    tokens = lm.tokenizer.convert_ids_to_tokens([aligned.input_ids[p] for p in aligned.positions])
    assert tokens == ["The", "Ġcat", "ĠJennifer"]  # not "cat" / "J enn ifer" as word-by-word tokenising gives


def test_truncation_drops_the_words_that_do_not_fit(encoder):
    sentence = ec.Sentence(tuple("a b c d e f".split()), ("X",) * 6)
    aligned = probing.align(encoder.tokenizer, sentence, max_length=5)  # [CLS] a b c [SEP]
    assert aligned.words == ("a", "b", "c")


# ------------------------------------------------------------------ capture
def test_collect_shapes_and_padding_do_not_matter(tiny):
    sentences = ec.read_conllu(DEV)[:12]
    batched = probing.collect(tiny, sentences, n_tokens=150, batch_size=5, progress=lambda f, m: None)
    alone = probing.collect(tiny, sentences, n_tokens=150, batch_size=1, progress=lambda f, m: None)
    assert batched.n_tokens == 150
    assert batched.hidden_states.shape == (tiny.n_layers + 1, 150, tiny.d_model)
    assert batched.ffn.shape == (tiny.n_layers, 150, tiny.d_ff)
    assert batched.hidden_layers == ("embeddings", "block 0", "block 1")
    assert batched.ffn_layers == ("block 0 FFN", "block 1 FFN")
    assert batched.tags[:7] == ("ADP", "DET", "PROPN", "VERB", "DET", "NOUN", "PUNCT")
    # Right padding with an attention mask leaves every real token's representations unchanged.
    np.testing.assert_allclose(batched.hidden_states, alone.hidden_states, atol=2e-4, rtol=1e-3)
    np.testing.assert_allclose(batched.ffn, alone.ffn, atol=2e-4, rtol=1e-3)


def test_collect_matches_a_plain_capture_of_the_sentence(encoder):
    sentence = ec.read_conllu(DEV)[1]
    data = probing.collect(encoder, [sentence], layers=["embeddings", 2], progress=lambda f, m: None)
    cap = ec.capture(encoder, " ".join(sentence.words))
    positions = list(probing.align(encoder.tokenizer, sentence).positions)
    np.testing.assert_allclose(data.hidden_states, cap.hidden_states[[0, 3]][:, positions], atol=1e-5)
    np.testing.assert_allclose(data.ffn, cap.ffn[[2]][:, positions], atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(layers=[7]), ValueError, r"layers must be .*'embeddings' and block indices 0 to 5; got \[7\]"),
        (dict(layers=[]), ValueError, r"layers must be a non-empty list .*; got \[\]"),
        (dict(n_tokens=0), ValueError, r"n_tokens must be a whole number >= 1; got 0"),
        (dict(n_tokens=2.5), TypeError, r"n_tokens must be a whole number >= 1; got 2.5"),
    ],
)
def test_collect_arguments_are_checked(encoder, kwargs, error, message):
    with pytest.raises(error, match=message):
        probing.collect(encoder, CONLLU, **kwargs)


# ------------------------------------------------------------------- probes
def _synthetic(n_tokens=3000, width=12, seed=0):
    """Tags with unequal frequencies, words unrelated to the tags, and features linear in the tag."""
    rng = np.random.default_rng(seed)
    frequencies = np.array([0.4, 0.25, 0.15, 0.12, 0.08])
    labels = rng.choice(len(frequencies), size=n_tokens, p=frequencies)
    tags = [probing.UPOS_TAGS[i] for i in labels]
    words = [f"w{i}" for i in rng.integers(0, 600, n_tokens)]
    directions = rng.standard_normal((len(frequencies), width))
    features = directions[labels] + 0.3 * rng.standard_normal((n_tokens, width))
    return features.astype(np.float32), tags, words


def test_standardising_and_evaluating_report_while_they_run(monkeypatch):
    """#31 item 6: training 1,000 words of every layer of the causal default went 8.6 s without a report
    (bench/estimates.py): reading and scaling the features before the first epoch and the final evaluation have
    no minibatch steps. Both now run under a heartbeat (here beating at every call)."""
    from ecco_core import _heartbeat
    from ecco_core.probing import training

    monkeypatch.setattr(training, "heartbeat", lambda progress, fraction, message: _heartbeat.heartbeat(
        progress, fraction, message, every_s=0.0))
    monkeypatch.setattr(training, "REPORT_EVERY_S", float("inf"))  # no reports within an epoch's minibatches
    features, tags, words = _synthetic(n_tokens=400)
    seen = []
    ec.train_probes([features[None]], tags, words, trials=1, epochs=1, progress=lambda *call: seen.append(call))
    assert seen[0] == (0.0, "standardising features")
    ends = [call for call in seen if call[0] == 1.0]  # the epoch's end, then the evaluation's beats
    assert len(ends) >= 2 and seen[-1] == (1.0, "training probes, epoch 1 of 1")


def test_probes_find_a_linear_tag_and_the_control_task_does_not():
    features, tags, words = _synthetic()
    stack = np.stack([features, features * 100 + 5])  # scale and offset do not matter
    scores = ec.train_probes([stack], tags, words, trials=3, epochs=15, lr=1e-2, progress=lambda f, m: None)
    assert scores.accuracy.shape == scores.control_accuracy.shape == (2, 3)
    assert scores.accuracy.min() > 0.95
    # Word types carry no information in these features: control probes stay near their majority guess.
    assert scores.control_accuracy.max() < 0.5
    assert (scores.selectivity > 0.45).all()


def test_shuffled_features_fall_to_the_majority_baseline():
    features, tags, words = _synthetic()
    shuffled = np.random.default_rng(1).permutation(features)
    scores = ec.train_probes([shuffled[None]], tags, words, trials=3, epochs=15, lr=1e-2,
                             progress=lambda f, m: None)
    assert 0.35 < scores.majority_accuracy.mean() < 0.45
    np.testing.assert_allclose(scores.accuracy[0], scores.majority_accuracy, atol=0.03)
    assert abs(scores.control_accuracy.mean() - scores.majority_accuracy.mean()) < 0.08


def test_stacks_of_different_widths_and_precisions_agree():
    features, tags, words = _synthetic(n_tokens=1500)
    wide = np.concatenate([features, np.random.default_rng(2).standard_normal((1500, 20))], axis=1)
    runs = {
        precision: ec.train_probes(
            [features[None], wide[None]], tags, words, trials=2, epochs=8, precision=precision,
            progress=lambda f, m: None,
        )
        for precision in ("float32", "bfloat16")
    }
    assert runs["float32"].accuracy.shape == (2, 2)
    np.testing.assert_allclose(runs["float32"].accuracy, runs["bfloat16"].accuracy, atol=0.02)


def test_the_best_of_several_learning_rates_is_kept():
    features, tags, words = _synthetic(n_tokens=1500)
    scores = ec.train_probes([features[None]], tags, words, trials=2, epochs=3, lr=probing.LEARNING_RATES,
                             progress=lambda f, m: None)
    assert scores.lr == 0.1  # 3 epochs are too few for the small rates
    assert scores.accuracy.min() > 0.95


def test_progress_defaults_to_a_tqdm_bar(capsys):
    features, tags, words = _synthetic(n_tokens=200)
    ec.train_probes([features[None]], tags, words, trials=1, epochs=2)
    assert "probing:" in capsys.readouterr().err  # tqdm redraws at most every 0.1 s


def test_control_tags_are_fixed_per_word_type_and_follow_the_tag_distribution():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in rng.integers(0, 2000, 20000)]
    real = rng.choice(3, size=20000, p=[0.6, 0.3, 0.1])
    control = probing.control_tags(words, real, 3, np.random.default_rng(1))
    by_type = {}
    for word, tag in zip(words, control):
        assert by_type.setdefault(word, tag) == tag
    np.testing.assert_allclose(np.bincount(list(by_type.values())) / len(by_type), [0.6, 0.3, 0.1], atol=0.04)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(lr=0), r"lr must be a finite number > 0; got 0"),
        (dict(lr=[]), r"lr must be a positive number or a sequence of them"),
        (dict(precision="half"), r"precision must be one of 'auto', 'float32', 'bfloat16'; got 'half'"),
        (dict(trials=0), r"trials must be a whole number >= 1; got 0"),
    ],
)
def test_training_arguments_are_checked(kwargs, message):
    features, tags, words = _synthetic(n_tokens=50)
    with pytest.raises(ValueError, match=message):
        ec.train_probes([features[None]], tags, words, **kwargs)


def test_stack_shape_is_checked():
    features, tags, words = _synthetic(n_tokens=50)
    with pytest.raises(ValueError, match=r"stacks\[0\].shape must be \(n_representations, n_tokens=50, width\); got \(50, 12\)"):
        ec.train_probes([features], tags, words)


def test_presets_are_the_papers_protocol_and_a_quick_subset_of_it():
    import inspect

    paper = probing.preset("paper", 12)
    assert paper.arguments() == dict(n_tokens=10_000, layers=("embeddings", *range(12)), trials=5, epochs=50, lr=1e-3)
    assert set(paper.arguments()) <= set(inspect.signature(ec.probe_table).parameters)
    quick = probing.preset("quick", 30, max_tokens=1_500)  # a deployment's limit caps the words
    assert quick.n_tokens == 1_500 and (quick.trials, quick.epochs, quick.lr) == (1, 20, 1e-3)
    assert quick.layers[:2] == ("embeddings", 0) and quick.layers[-1] == 29
    assert len(quick.layers) == 1 + probing.QUICK_BLOCKS and list(quick.layers[1:]) == sorted(set(quick.layers[1:]))
    assert probing.preset("quick", 3).layers == ("embeddings", 0, 1, 2)  # fewer blocks than the quick count
    with pytest.raises(ValueError, match="preset must be one of 'quick', 'paper'; got 'custom'"):
        probing.preset("custom", 12)


# -------------------------------------------------------------- real model
def test_probe_table_on_the_encoder(encoder):
    seen = []
    table = ec.probe_table(
        encoder, DEV, n_tokens=400, trials=2, epochs=4, layers=["embeddings", 0, 5],
        progress=lambda fraction, message: seen.append(fraction),
    )
    assert isinstance(table, probing.ProbeTable) and table.n_tokens == 400 and table.blocks == (None, 0, 0, 5, 5)
    markdown = table.to_markdown()
    table = table.to_frame()  # a frozen result, as every other view's
    assert not any(" " in column for column in table.columns)
    assert list(table.columns[:7]) == [
        "layer", "representation", "block", "accuracy", "accuracy_std", "selectivity", "selectivity_std",
    ]
    assert list(zip(table.layer, table.representation)) == [
        ("embeddings", "hidden"), ("block 0", "hidden"), ("block 0 FFN", "ffn"),
        ("block 5", "hidden"), ("block 5 FFN", "ffn"),
    ]
    assert table.block.isna().tolist() == [True, False, False, False, False]
    assert table.block.iloc[1:].tolist() == [0, 0, 5, 5]
    # Real representations of real text: every probe beats the most-frequent-tag guess and its control task.
    assert (table.accuracy > table.majority_accuracy + 0.2).all()
    assert (table.selectivity > 0).all()
    assert np.allclose(table.selectivity, table.accuracy - table.control_accuracy)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    assert markdown == probing.table1_markdown(table)
    assert markdown.splitlines()[2].startswith("| embeddings | - | - | ")
    assert markdown.splitlines()[3].startswith("| block 0 | ")


# -------------------------------------------------------------------- plots
def test_probe_lines_draw_hidden_and_ffn_by_layer_with_error_bars():
    from ecco_core.plots import probe_lines

    paper = probing.paper_table1()
    assert probing.table1_markdown(paper).splitlines()[5] == (
        "| block 2 | 87.3 (±0.5) | 35.9 (±0.5) | 94.2 (±0.3) | 20.9 (±0.8) |"
    )
    figure = probe_lines(paper, "selectivity")
    hidden, ffn = figure.data
    assert (hidden.name, ffn.name) == ("hidden states", "FFN activations")
    assert list(hidden.x) == ["embeddings"] + [f"block {block}" for block in range(12)]
    assert list(ffn.x) == [f"block {block}" for block in range(12)]  # a block's FFN on its block's tick
    assert hidden.hovertext[1] == "block 0" and ffn.hovertext[0] == "block 0 FFN"
    np.testing.assert_allclose(hidden.y, 100 * paper[paper.representation == "hidden"].selectivity)
    np.testing.assert_allclose(ffn.error_y.array, 100 * paper[paper.representation == "ffn"].selectivity_std)
    assert list(figure.layout.xaxis.categoryarray)[:2] == ["embeddings", "block 0"]
    with pytest.raises(ValueError, match="metric must be one of 'accuracy', 'selectivity'; got 'loss'"):
        probe_lines(paper, "loss")
