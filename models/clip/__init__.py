"""The CLIP backbone (open_clip with OpenAI key names) and building a model around it from a weight file."""
