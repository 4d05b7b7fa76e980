"""Cut an mmCIF text down to one model before biotite parses it.

biotite's text-CIF parser tokenises every row of `atom_site`, so a 20-model NMR ensemble costs 20
times the parse of the model we keep. PDB-written files put one atom per line, which lets us drop
the other models' rows with a cheap line filter. Anything not in that layout is left untouched.
"""

MODEL_COLUMN = "_atom_site.pdbx_PDB_model_num"


def keep_one_model(text: str, model: int) -> tuple[str, int] | None:
    """(text whose atom_site rows are only those of the `model`-th model in file order, model count).

    Returns None, meaning "parse the original text", when the file has no model column, a single
    model, or atom_site rows that do not hold exactly one row per line.
    """
    lines = text.split("\n")
    header_start = next((i for i, line in enumerate(lines) if line.startswith("_atom_site.")), None)
    if header_start is None or header_start == 0 or lines[header_start - 1].strip() != "loop_":
        return None
    header_end = header_start
    while header_end < len(lines) and lines[header_end].startswith("_atom_site."):
        header_end += 1
    columns = [line.strip() for line in lines[header_start:header_end]]
    if MODEL_COLUMN not in columns:
        return None
    model_index = columns.index(MODEL_COLUMN)
    rows_end = header_end
    while rows_end < len(lines) and not lines[rows_end].startswith(("#", "loop_", "_", "data_")):
        rows_end += 1
    rows = [line for line in lines[header_end:rows_end] if line.strip()]
    if not rows or _value(rows[0], model_index) == _value(rows[-1], model_index):
        return None  # models are contiguous blocks of rows, so this is a single model
    row_models = []
    for row in rows:
        values = row.split()
        if len(values) != len(columns):  # quoted values with spaces or rows over several lines
            return None
        row_models.append(values[model_index])
    model_ids = list(dict.fromkeys(row_models))
    if len(model_ids) <= 1 or model > len(model_ids):
        return None
    keep = model_ids[model - 1]
    kept = [row for row, row_model in zip(rows, row_models) if row_model == keep]
    return "\n".join(lines[:header_end] + kept + lines[rows_end:]), len(model_ids)


def _value(row: str, index: int) -> str | None:
    values = row.split()
    return values[index] if index < len(values) else None
