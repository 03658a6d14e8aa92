"""Pure media work on local files: manifest, probing, VAD, transcription, mixing, mastering, encoding,
transcript and chapter formats. Imports nothing else of roomcast."""
