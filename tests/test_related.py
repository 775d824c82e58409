"""Related Work: the positioning map, its two templates and the bibliography they cite."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pipeline.render.latex import make_environment
from pipeline.render.related import (
    BIB_PATH,
    GROUPS,
    RELATED_PATH,
    RelatedError,
    check_citations,
    display_path,
    load_related,
    read_bibliography,
    related_context,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = REPO_ROOT / "templates"
BASELINE_KEYS = ("xiao2024streamingllm", "zhang2023h2o", "li2024snapkv", "cai2024pyramidkv")
# Keys that sections other than Related Work cite, so the bibliography must keep them.
PAPER_KEYS = (
    *BASELINE_KEYS,
    "doyle1984random",
    "page1999pagerank",
    "abnar2020quantifying",
    "hsieh2024ruler",
    "bai2024longbench",
    "vaswani2017attention",
    "ainslie2023gqa",
    "su2024roformer",
    "allal2025smollm2",
    "efron1994bootstrap",
    "kwon2023vllm",
    "dao2022flashattention",
    "lovasz1993random",
)
VENUE_FIELDS = ("journal", "booktitle", "publisher", "eprint", "institution")
# Prose length of the section: about three quarters of an ICML column.
MIN_WORDS, MAX_WORDS = 300, 470

# LaTeX where digits are allowed: citation keys, labels, cross-references and inline math.
ALLOWED_DIGITS = re.compile(r"\\(?:citep|citet|cite|label|Cref|cref)\{[^}]*\}|\$[^$]*\$")


def shipped_data() -> dict:
    return yaml.safe_load(RELATED_PATH.read_text(encoding="utf-8"))


def write_map(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "related_work.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def load_error(tmp_path: Path, data: dict) -> str:
    path = write_map(tmp_path, data)
    with pytest.raises(RelatedError) as caught:
        load_related(path)
    return str(caught.value)


def render(name: str, related: dict) -> str:
    return make_environment(TEMPLATES).get_template(name).render(related=related, fit={"compact_related": False})


def digits_outside_allowed(tex: str) -> list[str]:
    return re.findall(r"\S*[0-9]\S*", ALLOWED_DIGITS.sub("", tex))


def prose_words(tex: str) -> int:
    text = re.sub(r"\\(?:section|paragraph|label|citep|Cref)\{[^}]*\}", " ", tex)
    return len(re.findall(r"[A-Za-z$][\w$'-]*", text))


# The shipped map


def test_shipped_map_loads():
    related = load_related(RELATED_PATH)
    assert [paragraph.group for paragraph in related.sections] == list(GROUPS)
    assert related.ours.name == "CircuitKV"


def test_shipped_map_tables_the_baselines():
    related = load_related(RELATED_PATH)
    table_keys = {entry.cite for entry in related.kv_cache if entry.in_table}
    assert set(BASELINE_KEYS) <= table_keys


def test_shipped_map_cites_known_keys():
    check_citations(load_related(RELATED_PATH), BIB_PATH)


def test_shipped_map_shown_relative_to_repository():
    assert display_path(RELATED_PATH) == "paper/content/related_work.yaml"


# Errors name the file and the field


def test_missing_field_named(tmp_path):
    data = shipped_data()
    del data["kv_cache"][2]["cite"]
    message = load_error(tmp_path, data)
    assert message.startswith(f"{tmp_path / 'related_work.yaml'}: ")
    assert "kv_cache[2].cite: missing" in message


def test_missing_section_named(tmp_path):
    data = shipped_data()
    data["sections"] = [paragraph for paragraph in data["sections"] if paragraph["group"] != "random_walks"]
    message = load_error(tmp_path, data)
    assert "sections: no paragraph for random_walks" in message


def test_wrong_type_text_named(tmp_path):
    data = shipped_data()
    data["long_context"][1]["signal"] = ["sparse", "attention"]
    message = load_error(tmp_path, data)
    assert "long_context[1].signal: expected text, got a list" in message


def test_wrong_type_flag_named(tmp_path):
    data = shipped_data()
    data["kv_cache"][0]["in_table"] = "maybe"
    message = load_error(tmp_path, data)
    assert "kv_cache[0].in_table: expected true or false" in message


def test_unknown_field_named(tmp_path):
    data = shipped_data()
    data["random_walks"][0]["year"] = "nineteen ninety-nine"
    message = load_error(tmp_path, data)
    assert "random_walks[0].year: unknown field" in message


def test_latex_markup_rejected(tmp_path):
    data = shipped_data()
    data["kv_cache"][3]["signal"] = r"scores tokens \citep{li2024snapkv}"
    message = load_error(tmp_path, data)
    assert "kv_cache[3].signal:" in message
    assert "LaTeX markup" in message


def test_digit_in_text_rejected(tmp_path):
    data = shipped_data()
    data["sections"][0]["lead"] = "Most methods keep 128 entries."
    message = load_error(tmp_path, data)
    assert "sections[0].lead:" in message
    assert "digit" in message


def test_name_with_digit_needs_latex_form(tmp_path):
    data = shipped_data()
    h2o = next(index for index, entry in enumerate(data["kv_cache"]) if entry["cite"] == "zhang2023h2o")
    del data["kv_cache"][h2o]["name_latex"]
    message = load_error(tmp_path, data)
    assert f"kv_cache[{h2o}].name_latex: missing" in message


def test_name_latex_must_print_name(tmp_path):
    data = shipped_data()
    h2o = next(index for index, entry in enumerate(data["kv_cache"]) if entry["cite"] == "zhang2023h2o")
    data["kv_cache"][h2o]["name_latex"] = "H$_3$O"
    message = load_error(tmp_path, data)
    assert f"kv_cache[{h2o}].name_latex: 'H$_3$O' does not print the name 'H2O'" in message


def test_repeated_cite_named(tmp_path):
    data = shipped_data()
    data["random_walks"][1]["cite"] = data["random_walks"][0]["cite"]
    message = load_error(tmp_path, data)
    assert "random_walks[1].cite: 'page1999pagerank' repeats random_walks[0].cite" in message


def test_invalid_yaml_named(tmp_path):
    path = tmp_path / "related_work.yaml"
    path.write_text("sections: [unclosed\n", encoding="utf-8")
    with pytest.raises(RelatedError, match=re.escape(f"{path}: not valid YAML")):
        load_related(path)


def test_unknown_cite_key_named(tmp_path):
    data = shipped_data()
    data["kv_cache"][1]["cite"] = "nobody2099ghost"
    path = write_map(tmp_path, data)
    related = load_related(path)
    with pytest.raises(RelatedError) as caught:
        check_citations(related, BIB_PATH)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "kv_cache[1].cite: nobody2099ghost" in message
    assert "templates/references.bib" in message


def test_related_error_is_value_error():
    assert issubclass(RelatedError, ValueError)


# The Related Work section


def test_section_cites_every_key():
    related = related_context(RELATED_PATH, BIB_PATH)
    tex = render("sections/related.tex.j2", related)
    cited = set(re.findall(r"\\citep\{([^}]*)\}", tex))
    assert cited == set(related["cite_keys"])


def test_section_has_label_and_table_pointer():
    tex = render("sections/related.tex.j2", related_context(RELATED_PATH, BIB_PATH))
    assert "\\section{Related Work}\n\\label{sec:related}" in tex
    assert tex.count("\\paragraph{") == len(GROUPS)
    assert tex.count("\\Cref{tab:related}") == 1


def test_section_has_no_digit_in_prose():
    tex = render("sections/related.tex.j2", related_context(RELATED_PATH, BIB_PATH))
    assert digits_outside_allowed(tex) == []


def test_section_length_fits_page_budget():
    words = prose_words(render("sections/related.tex.j2", related_context(RELATED_PATH, BIB_PATH)))
    assert MIN_WORDS <= words <= MAX_WORDS, f"{words} words; the section should hold {MIN_WORDS} to {MAX_WORDS}"


def test_section_escapes_special_characters(tmp_path):
    data = shipped_data()
    data["long_context"][0]["signal"] = "mixes local_window & global attention at a % share"
    related = related_context(write_map(tmp_path, data), BIB_PATH)
    tex = render("sections/related.tex.j2", related)
    assert r"local\_window \& global attention at a \% share" in tex


def test_digit_detector_finds_prose_digits():
    assert digits_outside_allowed(r"We keep 128 tokens~\citep{xiao2024streamingllm} and H$_2$O.") == ["128"]


# The appendix table


def test_table_rows_and_own_row_last():
    related = related_context(RELATED_PATH, BIB_PATH)
    tex = render("sections/related_table.tex.j2", related)
    rows = tex.split("\\midrule")
    for entry in related["table"]:
        assert f"\\citep{{{entry['cite']}}}" in rows[1]
    assert rows[-1].lstrip().startswith("\\raggedright CircuitKV (ours)")


def test_table_caption_above_tabular():
    tex = render("sections/related_table.tex.j2", related_context(RELATED_PATH, BIB_PATH))
    assert "\\begin{table*}" in tex
    assert tex.index("\\caption{") < tex.index("\\label{tab:related}") < tex.index("\\begin{tabular}")
    caption = re.search(r"\\caption\{(.*?)\}\n", tex).group(1)
    assert caption.count(". ") >= 1, "the caption should have at least two sentences"
    assert caption.endswith(".")


def test_table_leaves_section_to_appendix():
    tex = render("sections/related_table.tex.j2", related_context(RELATED_PATH, BIB_PATH))
    assert "\\section" not in tex
    assert "\\label{app:" not in tex


def test_table_header_columns():
    tex = render("sections/related_table.tex.j2", related_context(RELATED_PATH, BIB_PATH))
    assert "Method & Token signal & Budget policy & Difference from CircuitKV" in tex
    columns = re.search(r"\\begin\{tabular\}\{(.*)\}\n", tex).group(1)
    assert len(re.findall(r"p\{[^}]*\}", columns)) == 4
    assert re.sub(r"p\{[^}]*\}|@\{\}", "", columns) == ""


def test_table_has_no_digit_outside_markup():
    tex = render("sections/related_table.tex.j2", related_context(RELATED_PATH, BIB_PATH))
    body = tex[tex.index("\\caption{"):tex.index("\\begin{tabular}")] + tex[tex.index("\\toprule"):]
    assert digits_outside_allowed(body) == []


def test_table_lists_only_flagged_entries(tmp_path):
    data = shipped_data()
    for entry in data["kv_cache"][1:]:
        entry["in_table"] = False
    related = related_context(write_map(tmp_path, data), BIB_PATH)
    tex = render("sections/related_table.tex.j2", related)
    assert [entry["cite"] for entry in related["table"]] == [data["kv_cache"][0]["cite"]]
    assert tex.count("\\citep{") == 1


# The bibliography


def test_bibliography_entries_complete():
    entries = read_bibliography(BIB_PATH)
    for key, fields in entries.items():
        for field in ("author", "title", "year"):
            assert fields.get(field), f"{key}: no {field}"
        assert any(fields.get(field) for field in VENUE_FIELDS), f"{key}: no journal, booktitle, publisher or eprint"
        assert re.fullmatch(r"(19|20)[0-9]{2}", fields["year"]), f"{key}: year {fields['year']!r}"


def test_bibliography_keeps_paper_keys():
    entries = read_bibliography(BIB_PATH)
    missing = [key for key in PAPER_KEYS if key not in entries]
    assert missing == []


def test_bibliography_keys_unique():
    text = BIB_PATH.read_text(encoding="utf-8")
    keys = re.findall(r"@\w+\s*\{\s*([^,\s]+)\s*,", text)
    assert len(keys) == len(set(keys))
    assert len(read_bibliography(BIB_PATH)) == len(keys)


def test_bibliography_parser_reads_nested_and_quoted(tmp_path):
    path = tmp_path / "refs.bib"
    path.write_text(
        "@comment{ignored}\n"
        "@article{a2020,\n  title = {{Nested} {B{\\'e}zier}},\n  author = \"Doe, Jane\",\n  year = 2020\n}\n",
        encoding="utf-8",
    )
    entries = read_bibliography(path)
    assert entries["a2020"]["ENTRYTYPE"] == "article"
    assert entries["a2020"]["title"] == "{Nested} {B{\\'e}zier}"
    assert entries["a2020"]["author"] == "Doe, Jane"
    assert entries["a2020"]["year"] == "2020"
    assert list(entries) == ["a2020"]


def test_bibliography_parser_rejects_repeated_key(tmp_path):
    path = tmp_path / "refs.bib"
    entry = "@misc{same,\n  title = {T},\n}\n"
    path.write_text(entry + entry, encoding="utf-8")
    with pytest.raises(RelatedError, match="same appears twice"):
        read_bibliography(path)

