"""Template mining: texts of one shape that differ in a few words share a template."""

import pandas as pd
import pytest

from faultline.templates import mine_templates


def counts(**texts: int) -> pd.Series:
    return pd.Series({text.replace("_", " "): n for text, n in texts.items()})


def test_texts_differing_in_a_minority_of_words_share_a_template_without_those_words():
    templates = mine_templates(
        counts(no_module_named_flask=5, no_module_named_uvicorn=3, no_module_named_dotenv=1)
    )
    assert set(templates.values()) == {"no module named"}


def test_texts_of_another_length_or_first_word_never_join():
    templates = mine_templates(counts(disk_full_on_node=4, disk_full=4, probe_full_on_node=4))
    assert templates == {"disk full on node": "disk full on node", "disk full": "disk full",
                         "probe full on node": "probe full on node"}  # fmt: skip


def test_texts_that_share_less_than_the_threshold_stay_apart():
    templates = mine_templates(counts(push_denied_token_expired=3, push_timed_out_retry=3))
    assert len(set(templates.values())) == 2
    merged = mine_templates(counts(push_denied_token_expired=3, push_timed_out_retry=3), similarity=0.25)
    assert set(merged.values()) == {"push"}


def test_a_similarity_of_one_merges_only_identical_texts():
    templates = mine_templates(counts(a_b_c=2, a_b_d=1), similarity=1.0)
    assert templates == {"a b c": "a b c", "a b d": "a b d"}


def test_the_same_texts_give_the_same_templates_whatever_their_order():
    texts = counts(x_a_1=2, x_b_1=2, x_b_2=2, y_c=1)
    assert mine_templates(texts) == mine_templates(texts.iloc[::-1])


def test_a_similarity_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="similarity must be in"):
        mine_templates(counts(a=1), similarity=0)
