"""The on-disk formats avdd writes, named once: their readers check them, and avdd/outputs.py
recognises a folder avdd made by them (so the output policy depends on neither writer)."""

STORE_FORMAT = "avdd-store"
META_FILE = "meta.json"  # a store's description (avdd/data/store.py)
EXPERTS_FORMAT = "avdd-experts"
EXPERTS_MANIFEST = "experts.json"  # an expert folder's description (avdd/distill/experts.py)
