"""Training side (needs torch + transformers): teacher fine-tuning, baseline, distillation, students."""
