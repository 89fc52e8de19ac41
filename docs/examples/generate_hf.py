from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

tokenizer, model = AutoTokenizer.from_pretrained("runs/train/hf"), AutoModelForSeq2SeqLM.from_pretrained("runs/train/hf")
ids = model.generate(**tokenizer("continue: We tried the new cafe on Monday.", return_tensors="pt"), max_new_tokens=48)
print(tokenizer.decode(ids[0], skip_special_tokens=True))
