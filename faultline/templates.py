"""Template mining: cleaned texts that differ in a few variable words become one template.

Drain's idea (He et al. 2017, "Drain: An Online Log Parsing Approach with Fixed Depth Tree"):
texts with the same number of words and the same first word are compared position by position; a
text joins the template it matches in at least `similarity` of its positions, and the positions
where they differ become wildcards. The vectorizer then sees a template's constant words only, so
what masking could not name (a module, a process, a region) no longer splits a message from its
siblings, and Doc2Vec trains on a few hundred templates instead of every distinct text.
"""

import pandas as pd

WILDCARD = "<*>"
# Drain3's default similarity threshold is 0.4; half the positions is a little stricter.
DEFAULT_SIMILARITY = 0.5


def mine_templates(counts: pd.Series, similarity: float = DEFAULT_SIMILARITY) -> dict[str, str]:
    """The template of each text in `counts` (distinct texts -> event count), wildcards left out.

    Frequent texts seed the templates; ties go by text, so the same texts give the same templates.
    `similarity` 1.0 merges nothing.
    """
    if not 0 < similarity <= 1:
        raise ValueError(f"similarity must be in (0, 1], got {similarity}")
    order = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    templates_by_shape: dict[tuple[int, str], list[list[str]]] = {}
    template_of: dict[str, list[str]] = {}
    for text, _ in order:
        words = text.split()
        candidates = templates_by_shape.setdefault((len(words), words[0] if words else ""), [])
        best, best_share = None, -1.0
        for template in candidates:
            same = sum(1 for known, word in zip(template, words, strict=True) if known == word != WILDCARD)
            share = same / len(words) if words else 1.0
            if share > best_share:
                best, best_share = template, share
        if best is not None and best_share >= similarity:
            best[:] = [known if known == word else WILDCARD for known, word in zip(best, words, strict=True)]
            template_of[text] = best
        else:
            candidates.append(list(words))
            template_of[text] = candidates[-1]
    return {
        text: " ".join(word for word in template if word != WILDCARD)
        for text, template in template_of.items()
    }
