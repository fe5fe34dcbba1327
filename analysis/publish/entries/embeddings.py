"""Catalog entry for embeddings: every dataset step's hidden state in 2-D (PCA or UMAP)."""
from __future__ import annotations

from analysis.publish.catalog import Figured, register
from analysis.interp.embeddings import MAX_POINTS, embed
from analysis.publish.figures import embedding_scatter
from analysis.publish.figures.labels import action_names, data_name
from analysis.publish.figures.text import plain


@register("embedding", "hidden states of every dataset step in 2-D (PCA or UMAP), coloured by RTG, timestep, action or return")
def make_embedding(agent, dataset, method: str = "pca", colour_by: str = "rtg", max_points: int = MAX_POINTS,
                   seed: int = 0) -> Figured:
    res = embed(agent, dataset, method, max_points, seed)
    title = f"{plain(agent.kind.upper())} hidden states ({plain(method.upper())}) — {data_name(dataset)}"
    fig = embedding_scatter(res, colour_by, title, action_names=action_names(agent, dataset) if res.discrete else None)
    return Figured("embedding", fig, res.to_frame(), {"method": method, "colour_by": colour_by,
                                                      "max_points": int(max_points), "seed": int(seed)})
