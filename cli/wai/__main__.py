from wai.launch import main

main()
