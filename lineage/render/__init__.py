"""Pictures of the lineage: graphs (text, Mermaid, DOT, JSON, HTML) and cascade plans.

Presentation only: everything here takes records that were already loaded and
returns text; nothing reads the workspace.
"""

from lineage.render.graph import RENDERERS
from lineage.render.view import GraphView

__all__ = ["RENDERERS", "GraphView"]
