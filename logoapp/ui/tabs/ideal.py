"""2 · Ideal images: each class's pixel-mean image and the nearest-ideal (pixel-similarity) baseline."""
from __future__ import annotations

import gradio as gr

from ...views import board_df, ideal_views
from ..registry import pickers
from ..state import Session, Shared
from ..wiring import Ui, Updates

REFRESHES = ("ideal_plot", "ideal_md", "ideal_table", "hist", "dist", "bg")


def layout(ui: Ui, shared: Shared) -> None:
    iv = ideal_views(shared.ctx0)
    with gr.Tab("2 · Ideal images", id="ideal", elem_id="tab-ideal"):
        gr.Markdown("The simplest possible classifier (the book's *pixel similarity*): average every training "
                    "image of a class pixel by pixel into one **ideal** image, then call each new image the class "
                    "whose ideal it is closest to. The grey row is the book's 'weird average' over the colour "
                    "channels. It is the ladder's first rung: the leaderboard in the Train tab starts with it, and "
                    "every model trained there has to beat it.")
        with gr.Row():
            dist = gr.Radio([("L1: mean absolute difference", "l1"), ("RMSE: root mean squared error", "rmse")],
                            value="l1", label="Distance")
            bg = gr.Radio([("checkerboard", "checker"), ("white", "white")], value="checker",
                          label="Show transparency on", visible=shared.ctx0.ds.channels == 4)
        ideal_plot = gr.Plot(iv["ideal"], format="png", show_label=False, elem_id="ideal-plot")
        with gr.Row(equal_height=False):
            ideal_md = gr.Markdown(iv["ideal_md"])
            ideal_table = gr.Dataframe(iv["ideal_table"], label="Per-class accuracy", interactive=False, max_height=320)
        hist = gr.Plot(iv["hist"], format="png", show_label=False)
    ui.add(dist=dist, bg=bg, ideal_plot=ideal_plot, ideal_md=ideal_md, ideal_table=ideal_table, hist=hist)


def wire(ui: Ui) -> None:
    ui.on(["dist.change", "bg.change"], on_ideal, ["session", "dist", "bg"],
          ["ideal_plot", "ideal_md", "ideal_table", "hist", "board", "emodel", "pmodel"], api_name="ideal")


def refresh(s: Session) -> Updates:
    v = ideal_views(s.data)
    return Updates(ideal_plot=v["ideal"], ideal_md=v["ideal_md"], ideal_table=v["ideal_table"], hist=v["hist"],
                   dist="l1", bg=gr.update(visible=s.data.ds.channels == 4))


# ============================================================================================= handlers

def on_ideal(s: Session, distance, background) -> Updates:
    """Ideal images, baseline accuracy and distance histograms for 'l1' or 'rmse'."""
    v = ideal_views(s.data, distance, background)
    return (Updates(ideal_plot=v["ideal"], ideal_md=v["ideal_md"], ideal_table=v["ideal_table"], hist=v["hist"],
                    board=board_df(s.board, s.data)) | pickers(s))
