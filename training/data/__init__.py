"""Dataset builders and loaders (COCO, RedCaps, synthetic, feedback, mixing)."""
