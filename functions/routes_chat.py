"""Chat and text completion routes (generation issue)."""

from fastapi import APIRouter

router = APIRouter()
