"""Start the logoapp web app: `python app.py` (see `python app.py --help`); Hugging Face Spaces runs this file too."""
from logoapp.ui import main

if __name__ == "__main__":
    main()
