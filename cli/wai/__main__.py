from wai.app import main

main()
