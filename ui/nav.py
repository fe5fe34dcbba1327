"""The sidebar's page list, the same on every page (Streamlit's own list would name the home page 'app')."""
import streamlit as st
from streamlit.errors import StreamlitAPIException

PAGES = [
    ("app.py", "Home", ":material/home:"),
    ("pages/1_Dataset.py", "Dataset", ":material/table_rows:"),
    ("pages/2_Attention.py", "Attention", ":material/visibility:"),
    ("pages/3_Return_conditioning.py", "Return conditioning", ":material/tune:"),
    ("pages/4_Credit_assignment.py", "Credit assignment", ":material/account_tree:"),
    ("pages/5_Predicted_vs_real.py", "Predicted vs real", ":material/compare_arrows:"),
    ("pages/6_Embeddings.py", "Embeddings", ":material/scatter_plot:"),
    ("pages/7_Context_and_memory.py", "Context & memory", ":material/memory:"),
]


def sidebar() -> None:
    with st.sidebar:
        try:
            for path, label, icon in PAGES:
                st.page_link(path, label=label, icon=icon)
        except StreamlitAPIException:   # a page run on its own (AppTest) has no app to link to
            return
        st.divider()
