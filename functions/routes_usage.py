"""Usage and metering routes (billing issue)."""

from fastapi import APIRouter

router = APIRouter()
