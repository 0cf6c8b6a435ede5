#!/usr/bin/env python3
"""Converts the paper's released run sheets (.xlsx, one per scenario) to the runs.csv format plait-plan reads.

usage: scripts/paper_runs_from_xlsx.py SHEET.xlsx... > runs.csv

Standard library only (an .xlsx file is a zip of XML parts). The scenario comes from the file name
(llama_<size>B_..._<8k_seq_length>_..._<N>_GPUs_..., "sequence_parallelism" for the seqpar study); each row keeps
the sheet's world size, layout, kernel and checkpointing; status is ok where the MFU cell is a number, oom for
"OOM Error" and error for anything else ("Other Error", "Kernel not available"). Step time is rounded to
milliseconds and MFU to four digits, as tests/plan/data/paper_runs.csv has them.
"""
import csv
import os
import re
import sys
import xml.etree.ElementTree as ET
import zipfile

NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
COLUMNS = ["study", "model", "seq_len", "gpus", "tp", "pp", "mbs", "act_ckpt", "kernel", "seq_parallel",
           "step_time_s", "mfu", "status"]


def column_index(ref):
    n = 0
    for ch in re.match(r"[A-Z]+", ref).group(0):
        n = n * 26 + ord(ch) - ord("A") + 1
    return n - 1


def first_sheet(path):
    with zipfile.ZipFile(path) as z:
        strings = []
        if "xl/sharedStrings.xml" in z.namelist():
            for si in ET.fromstring(z.read("xl/sharedStrings.xml")).iter(NS + "si"):
                strings.append("".join(t.text or "" for t in si.iter(NS + "t")))
        rows = []
        for row in ET.fromstring(z.read("xl/worksheets/sheet1.xml")).iter(NS + "row"):
            cells = {}
            for c in row.iter(NS + "c"):
                v = c.find(NS + "v")
                if v is None:
                    text = "".join(t.text or "" for t in c.iter(NS + "t"))
                else:
                    text = strings[int(v.text)] if c.get("t") == "s" else v.text
                cells[column_index(c.get("r"))] = text
            if cells:
                rows.append([cells.get(i, "") for i in range(max(cells) + 1)])
        return rows


def number(text):
    try:
        return float(text)
    except ValueError:
        return None


def runs(path):
    name = os.path.basename(path)
    size = re.search(r"llama_(\d+B)", name)
    if not size:
        sys.exit(f"{path}: the file name does not say the model (llama_<size>B_...)")
    rows = first_sheet(path)
    header = next((r for r in rows if "Trial ID" in r), None)
    if header is None:
        sys.exit(f"{path}: no header row with 'Trial ID'")
    for r in rows[rows.index(header) + 1:]:
        d = dict(zip(header, r))
        if not d.get("Trial ID"):
            continue
        mfu = number(d["Average MFU"])
        status = "ok" if mfu is not None else "oom" if d["Average MFU"] == "OOM Error" else "error"
        yield {"study": "seqpar" if "sequence_parallel" in name else "layouts", "model": size.group(1),
               "seq_len": "8192" if "8k" in name else "2048", "gpus": d["World Size"],
               "tp": d["model_parallel_size"], "pp": d["pipe_parallel_size"], "mbs": d["micro_batch_size"],
               "act_ckpt": d["activation_checkpointing_type"], "kernel": d["kernel"],
               "seq_parallel": d.get("sequence_parallel", ""),
               "step_time_s": "%.3f" % float(d["Average Step Time"]) if status == "ok" else "",
               "mfu": "%.4f" % mfu if status == "ok" else "", "status": status}


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__.strip().splitlines()[2])
    out = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, lineterminator="\n")
    out.writeheader()
    for path in sys.argv[1:]:
        for run in runs(path):
            out.writerow(run)


if __name__ == "__main__":
    main()
