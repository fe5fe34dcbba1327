"""Streamlit glue shared by app.py and views/: cached loading and the session's current selection."""
