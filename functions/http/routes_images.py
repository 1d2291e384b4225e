"""Image embeddings (`POST /images/embeddings`, what azure-ai-inference's `ImageEmbeddingsClient` calls): images
as base64 data URLs, each with an optional text, embedded by an `image-embeddings` deployment."""

from fastapi import APIRouter, Request
from fastapi.responses import Response

from functions.http.body import StrictJsonRoute
from functions.http.deps import Auth, DeploymentHeader, Extra, Gate
from functions.http.headers import note_route
from functions.http.jobs import submit_and_respond
from shared.runtimes import image_embeddings
from shared.schemas.image_embeddings import ImageEmbeddingsRequest

router = APIRouter(route_class=StrictJsonRoute)


@router.post("/images/embeddings")
async def create_image_embeddings(
    body: ImageEmbeddingsRequest, request: Request, gw: Gate, who: Auth, extra: Extra, header: DeploymentHeader = None
) -> Response:
    route = gw.route(body.model, header, image_embeddings.KIND)
    note_route(request, route)
    return await submit_and_respond(gw, who, route, body, extra, request)
