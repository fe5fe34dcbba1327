"""The page list, for st.navigation (app.py). URL paths are the names the pages had as files in pages/,
so links and bookmarks (`/Attention?agent=cartpole-dt&dataset=cartpole`) keep working. The files live in views/:
with a pages/ folder, a direct link showed that folder's files in the sidebar (Streamlit's own page discovery)
instead of this list."""
import streamlit as st

PAGES = [
    ("home.py", "Home", ":material/home:", None),
    ("views/1_Dataset.py", "Dataset", ":material/table_rows:", "Dataset"),
    ("views/2_Attention.py", "Attention", ":material/visibility:", "Attention"),
    ("views/3_Return_conditioning.py", "Return conditioning", ":material/tune:", "Return_conditioning"),
    ("views/4_Credit_assignment.py", "Credit assignment", ":material/account_tree:", "Credit_assignment"),
    ("views/5_Predicted_vs_real.py", "Predicted vs real", ":material/compare_arrows:", "Predicted_vs_real"),
    ("views/6_Embeddings.py", "Embeddings", ":material/scatter_plot:", "Embeddings"),
    ("views/7_Context_and_memory.py", "Context & memory", ":material/memory:", "Context_and_memory"),
    ("views/8_Circuits.py", "Circuits", ":material/cable:", "Circuits"),
    ("views/9_Episode_player.py", "Episode player", ":material/play_circle:", "Episode_player"),
    ("views/10_Live_play.py", "Live play", ":material/sports_esports:", "Live_play"),
]


def pages() -> list:
    return [st.Page(path, title=title, icon=icon, url_path=url, default=url is None) for path, title, icon, url in PAGES]
