"""Whole slides: read scanner files (OpenSlide), map where to count, tile the counting area,
count its cells at the model's scale, and write the report, cells.csv and a QuPath GeoJSON.

    reader.py      the one owner of opening and reading slide files (`Slide`, `SlideInfo`)
    resolution.py  the level and resize that bring a slide to the model's microns per pixel
    tiles.py       tiles with an overlap over a region; the tile that owns a cell's centre
    tissue.py      the slide's map (background, particles, thick, countable, feathered edge)
                   and each tile's score, from a low-resolution level read in strips
    journal.py     a count's finished tiles and cells on disk, so that an interrupted count
                   goes on where it stopped
    count.py       tiles in, cells out (detect, classify, keep the owned cells)
    geojson.py     the cells and counted tiles as QuPath detections and annotations
    report.py      a slide's report folder (the report of fields, with the slide's details)
    pyramid.py     the one writer of tiled pyramidal TIFFs (synthetic slides)
    commands.py    `marrowdiff count`, for fields and slides
"""
